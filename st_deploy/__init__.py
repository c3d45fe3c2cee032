"""st-deploy: turn pruned networks ("tickets") into real sparse inference."""

from .version import __version__  # noqa: E402

from .errors import DeployError, FidelityError  # noqa: E402
from .ticket import Ticket  # noqa: E402
# Load the stage subpackages first: importing a submodule binds it as an attribute of this
# package, so doing it later would shadow the API functions of the same names below.
from . import compact as _compact_stage, export as _export_stage, inspect as _inspect_stage  # noqa: E402,F401
from .runtime import load, ort_library_path, ort_session  # noqa: E402
from .api import compact, export, inspect, load_ticket, make_example, pack, save_ticket  # noqa: E402

__all__ = ["__version__", "DeployError", "FidelityError", "Ticket", "load_ticket", "save_ticket",
           "pack", "inspect", "make_example", "compact", "export", "ort_session", "ort_library_path", "load"]
