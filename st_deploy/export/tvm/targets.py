"""Targets for the TVM export: friendly names and TVM target dicts -> one TargetSpec.

TVM 0.27 rejects target strings with options, and a plain "llvm" is generic x86-64 (SSE only), so
every friendly name becomes an explicit target dict here:
  llvm     this machine's CPU with its real -mcpu (llvm_get_system_cpu), our kernels linked in
  aarch64  generic ARMv8-A + NEON Linux board, cross-compiled with aarch64-linux-gnu-g++
  rasp4    Raspberry Pi 4 (Cortex-A72), same toolchain
  cuda     NVIDIA GPU, `arch` sm_XX (default sm_80); our CUDA kernels (nvcc) linked in
A TVM target dict (or its JSON) is accepted as is; its kind and triple decide the rest.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from typing import Any

from ...runtime.arch import host_arch
from ...errors import DeployError

FRIENDLY = ("llvm", "aarch64", "rasp4", "cuda")
DEFAULT_CUDA_ARCH = "sm_80"
AARCH64_CXX = "aarch64-linux-gnu-g++"
_AARCH64_TRIPLE = "aarch64-linux-gnu"


@dataclass(frozen=True)
class TargetSpec:
    """What the exporter needs to know about a target.

    name: the friendly name (or "custom" for a user's dict); tvm: the TVM target dict;
    arch: "x86_64" | "aarch64" (the CPU the .so runs on); kernels: whether our kernels are
    linked in (every target: the CPU kernels on llvm, the CUDA kernels on cuda); cxx: the
    compiler that links the .so; host_runnable: whether this machine can load and run the
    artifact (fidelity is measured on it directly).
    """

    name: str
    tvm: dict[str, Any]
    arch: str
    kernels: bool
    cxx: str
    host_runnable: bool

    @property
    def kind(self) -> str:
        return str(self.tvm["kind"])

    @property
    def gpu(self) -> bool:
        return self.kind == "cuda"

    @property
    def kernel_prefix(self) -> str:
        """Prefix of our kernels' symbols on this target: conv2d_csr (CPU), cuda_conv2d_csr (GPU)."""
        return "cuda_" if self.gpu else ""

    def tvm_target(self) -> Any:
        import tvm
        if self.kind == "cuda":
            # The VM's host code runs on this machine's CPU next to the GPU.
            return tvm.target.Target(self.tvm, host=host_llvm_dict())
        return tvm.target.Target(self.tvm)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "tvm": json.loads(str(self.tvm_target())), "arch": self.arch,
                "cxx": self.cxx}


def host_llvm_dict() -> dict[str, Any]:
    import tvm
    return {"kind": "llvm", "mcpu": tvm.target.codegen.llvm_get_system_cpu(), "num-cores": os.cpu_count() or 1}


def _parse(target: Any) -> tuple[str, dict[str, Any]]:
    if isinstance(target, dict):
        return "custom", dict(target)
    if not isinstance(target, str) or not target.strip():
        raise DeployError(f"TVM target {target!r}: give one of {', '.join(FRIENDLY)}, a TVM target dict or its JSON")
    s = target.strip()
    if s.startswith("{"):
        try:
            d = json.loads(s)
        except json.JSONDecodeError as e:
            raise DeployError(f"TVM target JSON {s!r} does not parse: {e.msg}") from None
        if not isinstance(d, dict):
            raise DeployError(f"TVM target JSON {s!r}: expected an object with a 'kind'")
        return "custom", d
    # "cuda --arch sm_86" / "cuda -arch=sm_86": the CLI's spelling of the one cuda option we take.
    m = re.fullmatch(r"cuda(?:\s+-{1,2}arch[ =](sm_\d+))?", s)
    if m:
        return "cuda", {"kind": "cuda", "arch": m.group(1) or DEFAULT_CUDA_ARCH}
    if s == "llvm":
        return "llvm", host_llvm_dict()
    if s == "aarch64":
        return "aarch64", {"kind": "llvm", "mtriple": _AARCH64_TRIPLE, "mattr": ["+neon"]}
    if s == "rasp4":
        return "rasp4", {"kind": "llvm", "mtriple": _AARCH64_TRIPLE, "mcpu": "cortex-a72", "mattr": ["+neon"]}
    raise DeployError(f"TVM target {s!r}: give one of {', '.join(FRIENDLY)} (cuda takes --arch sm_XX), "
                      f"a TVM target dict or its JSON")


def resolve_target(target: Any) -> TargetSpec:
    """A TargetSpec for a friendly name, a TVM target dict or JSON (DeployError if unsupported)."""
    name, d = _parse(target)
    kind = d.get("kind")
    if kind == "cuda":
        if not re.fullmatch(r"sm_\d+", str(d.get("arch", DEFAULT_CUDA_ARCH))):
            raise DeployError(f"TVM target {target!r}: cuda arch must look like sm_80, got {d.get('arch')!r}")
        d.setdefault("arch", DEFAULT_CUDA_ARCH)
        if find_nvcc() is None:
            raise DeployError(f"TVM target {target!r}: model.so links our CUDA kernels, compiled with nvcc, which "
                              f"is not on PATH (set CUDA_PATH or CUDA_HOME to the CUDA toolkit)")
        spec = TargetSpec(name, d, host_arch(), kernels=True, cxx="g++", host_runnable=False)
    elif kind == "llvm":
        triple = str(d.get("mtriple", ""))
        arch = triple.split("-")[0] if triple else host_arch()
        if arch in ("arm64",):
            arch = "aarch64"
        if arch not in ("x86_64", "aarch64"):
            raise DeployError(f"TVM target {target!r}: CPU {arch!r} is not supported (x86_64 and aarch64 are)")
        cross = arch != host_arch()
        cxx = AARCH64_CXX if cross and arch == "aarch64" else "g++"
        spec = TargetSpec(name, d, arch, kernels=True, cxx=cxx, host_runnable=not cross)
    else:
        raise DeployError(f"TVM target {target!r}: kind {kind!r} is not supported (llvm and cuda are)")
    try:
        spec.tvm_target()
    except Exception as e:  # TVM's own validation of keys and values
        raise DeployError(f"TVM target {target!r} is not a valid TVM target: {str(e).splitlines()[-1]}") from None
    if spec.cxx != "g++" and shutil.which(spec.cxx) is None:
        raise DeployError(f"TVM target {name}: cross-compiling for {spec.arch} needs {spec.cxx}; install it with "
                          f"`apt-get install g++-aarch64-linux-gnu` (Debian/Ubuntu)")
    return spec


def find_nvcc() -> str | None:
    """Path of nvcc (CUDA_PATH/bin, then PATH), or None."""
    cuda = os.environ.get("CUDA_PATH") or os.environ.get("CUDA_HOME")
    if cuda and os.path.isfile(os.path.join(cuda, "bin", "nvcc")):
        return os.path.join(cuda, "bin", "nvcc")
    return shutil.which("nvcc")
