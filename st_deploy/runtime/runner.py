"""Running exported artifacts: `st_deploy.load(DIR).run(x)`.

A TVM artifact (manifest target.backend "tvm") loads model.so with tvm.runtime.load_module and runs its
"main" in a Relax VM; the kernels inside model.so get their own thread count. An ONNX artifact
runs in onnxruntime through st_deploy.runtime.ort.ort_session (model.sparse.onnx unless dense=True).

Every runner may be called from many threads at once. ONNX Runtime's InferenceSession.run is
thread-safe, so an ORTRunner shares one session. A Relax VM is not (it keeps registers and the
current frame in the object: concurrent calls crashed in StorageObj::AllocTensor), so a TVMRunner
keeps a pool of VMs over the one loaded model.so: a call takes an idle VM or makes a new one, and
gives it back when done, so N concurrent callers run on N VMs in parallel and the pool grows to
the peak number of concurrent callers (bounded by `max_vms`, beyond which callers wait).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from ..artifact import DENSE_ONNX, SPARSE_ONNX, TVM_LIBRARY, read_manifest
from ..errors import DeployError


def _threads(threads: int | None) -> int:
    if threads is None:
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise DeployError(f"threads must be an int >= 1, got {threads!r}")
    return threads


def _as_input(x: Any, shape: list[int]) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    a = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if list(a.shape) != list(shape):
        raise DeployError(f"input shape {tuple(a.shape)}: this artifact was built for {tuple(shape)}")
    return a


def _cuda_runtime(tvm: Any) -> None:
    """Prepare this process's TVM to run a cuda artifact.

    Two things a runtime-only TVM (TVM_USE_RUNTIME_LIB=1, as on a deployment box) lacks: its
    CUDA runtime library is loaded only by the compiler's backend autoload, so it is loaded here;
    and the kernels TVM generated for the non-conv ops are stored in model.so as CUDA source (the
    pip build of TVM 0.27 does not compile them at export), which the CUDA module compiles on
    first use through the global "tvm_callback_cuda_compile". Ours compiles for the GPU actually
    present (NVRTC by default, nvcc with TVM_CUDA_COMPILE_MODE=nvcc), so it needs no compiler
    target context. Our own sparse kernels are machine code already (nvcc at export).
    """
    import ctypes

    import tvm_ffi

    if tvm_ffi.get_global_func("ffi.Module.load_from_bytes.cuda", allow_missing=True) is None:
        from tvm.base import _LOADED_LIBS
        lib = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent / "libtvm_runtime_cuda.so"
        try:
            ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            raise DeployError(f"this TVM cannot run cuda artifacts: loading {lib.name} failed ({e})") from None
    if getattr(_cuda_runtime, "hook", None) is None:
        def compile_for_this_gpu(code: str, *_: Any) -> bytes:
            return compile_cuda_source(code, "sm_" + tvm.cuda(0).compute_version.replace(".", ""))
        tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_for_this_gpu, override=True)
        _cuda_runtime.hook = compile_for_this_gpu  # type: ignore[attr-defined]


def compile_cuda_source(code: str, arch: str) -> bytes:
    """CUDA source -> cubin for `arch` (sm_XX): NVRTC (cuda-bindings) unless TVM_CUDA_COMPILE_MODE=nvcc
    or NVRTC is missing; nvcc is run directly, since TVM's nvcc path needs its compiler library."""
    import importlib.util
    import shutil
    import subprocess
    import tempfile

    mode = os.environ.get("TVM_CUDA_COMPILE_MODE", "nvrtc").lower()
    if mode == "nvrtc" and importlib.util.find_spec("cuda.bindings") is not None:
        from tvm.support import nvcc
        return bytes(nvcc.compile_cuda(code, target_format="cubin", arch=arch, compiler="nvrtc"))
    exe = shutil.which("nvcc")
    if exe is None:
        raise DeployError("compiling the artifact's CUDA kernels needs NVRTC (pip install cuda-bindings) or nvcc")
    with tempfile.TemporaryDirectory(prefix="st-cuda-") as d:
        src, out = Path(d) / "kernels.cu", Path(d) / "kernels.cubin"
        src.write_text(code)
        r = subprocess.run([exe, "--cubin", "-O3", f"-arch={arch}", "-o", str(out), str(src)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise DeployError(f"nvcc could not compile the artifact's CUDA kernels: {r.stderr.strip()[-500:]}")
        return out.read_bytes()


class TVMRunner:
    """model.so of a TVM export, on this machine's CPU (or GPU for cuda artifacts).

    Needs only TVM's runtime (tvm.runtime.vm, not tvm.relax), so it runs where TVM is installed
    runtime-only. Thread-safe: a pool of VMs over the one loaded library, one per concurrent caller
    (max_vms bounds it; None: as many as callers at once)."""

    def __init__(self, folder: Path, manifest: dict[str, Any], threads: int, max_vms: int | None = None) -> None:
        import tvm
        from tvm.runtime.vm import VirtualMachine

        from .arch import host_arch
        target = manifest["target"]
        if target["arch"] != host_arch():
            raise DeployError(f"{folder}: built for {target['arch']} ({target['name']}); this machine is "
                              f"{host_arch()}: copy model.so to the board and load it there")
        self.folder, self.manifest, self.threads = folder, manifest, threads
        self.input_shape = manifest["inputs"][0]["shape"]
        # TVM's pool reads TVM_NUM_THREADS when it first starts; config_threadpool resizes a running one.
        os.environ.setdefault("TVM_NUM_THREADS", str(threads))
        _configure_tvm_pool(tvm, threads)
        gpu = target["device"] == "cuda"
        if gpu:
            try:
                _cuda_runtime(tvm)
            except DeployError:
                raise
            except Exception as e:  # a TVM without CUDA pieces
                raise DeployError(f"{folder}: built for {target['name']}, but this TVM cannot run "
                                  f"cuda artifacts ({str(e).strip().splitlines()[-1]})") from None
        self.device = tvm.cuda(0) if gpu else tvm.cpu(0)
        if not self.device.exist:
            raise DeployError(f"{folder}: built for {target['name']}, but this machine has no such "
                              f"device (or this TVM build has no CUDA runtime)")
        try:
            self.lib = tvm.runtime.load_module(str(folder / TVM_LIBRARY))
        except Exception as e:
            raise DeployError(f"{folder}: cannot load {TVM_LIBRARY}: "
                              f"{str(e).strip().splitlines()[-1]}") from None
        # Whose threads run our kernels' parallel loops: TVM's pool (the one config_threadpool sized
        # above) where model.so can reach it, so two pools never compete for the cores.
        self.kernel_pool = "none"
        if target["kernels"] and not gpu:
            self.lib.get_function("set_num_threads", True)(threads)
            use_host_pool = self.lib.get_function("use_host_pool", True)
            self.kernel_pool = "tvm" if use_host_pool is not None and use_host_pool(True) else "st_kernels"
        if max_vms is not None and (not isinstance(max_vms, int) or isinstance(max_vms, bool) or max_vms < 1):
            raise DeployError(f"max_vms must be an int >= 1 or None, got {max_vms!r}")
        self.max_vms = max_vms
        def make_vm() -> tuple[Any, Any]:
            vm = VirtualMachine(self.lib, self.device)
            return vm, vm["main"]
        self._make_vm = make_vm
        self._pool_cv = threading.Condition()
        self._per_thread = threading.local()
        # The first VM is made here, so a broken model.so fails at load; single-threaded callers
        # always get it back (the pool is LIFO), which per-layer timing relies on (self.vm).
        self.vm, self._main = self._make_vm()
        self._idle: list[tuple[Any, Any]] = [(self.vm, self._main)]
        self._made = 1
        self._per_thread.configured = True

    @property
    def vms(self) -> int:
        """How many VMs the pool holds (idle or in use): the peak number of concurrent callers so far."""
        return self._made

    def _take_vm(self) -> tuple[Any, Any]:
        with self._pool_cv:
            while not self._idle and self.max_vms is not None and self._made >= self.max_vms:
                self._pool_cv.wait()
            if self._idle:
                return self._idle.pop()
            self._made += 1
        try:
            return self._make_vm()
        except BaseException:
            with self._pool_cv:
                self._made -= 1
                self._pool_cv.notify()
            raise

    def _give_back(self, vm: tuple[Any, Any]) -> None:
        with self._pool_cv:
            self._idle.append(vm)
            self._pool_cv.notify()

    def run(self, x: Any) -> np.ndarray | list[np.ndarray]:
        """Run "main" on x; safe to call from any number of threads at once (see the module docstring)."""
        import tvm
        a = _as_input(x, self.input_shape)
        if not getattr(self._per_thread, "configured", False):
            # TVM's thread pool is per calling thread: size this thread's pool like the first one's.
            _configure_tvm_pool(tvm, self.threads)
            self._per_thread.configured = True
        vm = self._take_vm()
        try:
            out = vm[1](tvm.runtime.tensor(a, self.device))
            if isinstance(out, tvm.runtime.Tensor):
                return out.numpy()
            return [o.numpy() for o in out]
        finally:
            self._give_back(vm)


def _configure_tvm_pool(tvm: Any, threads: int) -> None:
    """Size the calling thread's TVM pool; its threads share every CPU this process may use.

    Mode -3 (share all given cores), not 1 ("big cores"): mode 1 pinned the calling thread to CPU 0
    at one thread (two one-thread runners in two processes then shared one core) and each worker
    to one CPU (our kernels' tasks could not move off a busy core).
    """
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else range(os.cpu_count() or 1)
    tvm.get_global_func("runtime.config_threadpool")(-3, threads, [str(c) for c in cpus])


class ORTRunner:
    """model.sparse.onnx (or model.dense.onnx) of an ONNX export in one onnxruntime session.

    Thread-safe: InferenceSession.run may be called concurrently, so all callers share the session
    (each call runs on its caller's thread plus the session's intra-op pool)."""

    def __init__(self, folder: Path, manifest: dict[str, Any], threads: int, dense: bool) -> None:
        try:
            from .ort import ort_session
        except ImportError:
            raise DeployError(f"{folder}: running ONNX artifacts needs st_deploy.runtime.ort (not in this install)") from None
        name = DENSE_ONNX if dense else SPARSE_ONNX
        if not (folder / name).is_file():
            raise DeployError(f"{folder}: {name} is missing")
        self.session = ort_session(folder / name, threads=threads)
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = [1, *manifest["inputs"][0]["shape"][1:]]

    def run(self, x: Any) -> np.ndarray | list[np.ndarray]:
        a = x.detach().cpu().numpy() if hasattr(x, "detach") else x
        outs = self.session.run(None, {self.input_name: np.ascontiguousarray(np.asarray(a, dtype=np.float32))})
        return outs[0] if len(outs) == 1 else outs


def load(folder: str | Path, threads: int | None = None, dense: bool = False,
         max_vms: int | None = None) -> TVMRunner | ORTRunner:
    """A runner for an exported folder: `.run(x)` returns the output array (or a list of them).

    threads: threads for the runtime's pool and our kernels (default: every core this process
    may use). dense: for ONNX artifacts, run model.dense.onnx instead of model.sparse.onnx.
    `.run` is safe to call from many threads at once (see the module docstring); max_vms bounds
    a TVM runner's pool of VMs (default: one per concurrent caller).
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    n = _threads(threads)
    if manifest["target"]["backend"] == "onnx":
        return ORTRunner(folder, manifest, n, dense)
    return TVMRunner(folder, manifest, n, max_vms=max_vms)
