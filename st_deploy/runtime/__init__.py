"""runtime: what a deployment box needs to run an exported artifact, and nothing of the compiler.

runner (st_deploy.load: a TVM or ONNX artifact folder -> .run(x)), ort (onnxruntime sessions with
the st.sparse custom ops registered), libpath (where the compiled libraries lie) and arch (this
machine's architecture in the names artifacts use). Imports no exporter: TVM's runtime alone runs
a TVM artifact.
"""

from .arch import host_arch
from .libpath import find_library
from .ort import ort_library_path, ort_session
from .runner import ORTRunner, TVMRunner, load

__all__ = ["load", "TVMRunner", "ORTRunner", "ort_session", "ort_library_path", "find_library", "host_arch"]
