"""Which ISA variant runs, how many threads, and which variants exist (from kernels/kernels.inc)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from st_deploy.errors import DeployError

from ._lib import call

ISAS = ("avx512", "avx2", "neon", "scalar")


def isa() -> str:
    """The variant that runs now: "avx512", "avx2", "neon" or "scalar".

    Chosen from CPU features at first use; $ST_KERNELS_ISA forces one (an unsupported request
    makes every kernel call fail rather than silently running another variant).
    """
    try:
        return str(call("isa"))
    except Exception as e:
        raise DeployError(str(e).strip()) from None


def isa_available(name: str) -> bool:
    """True if this CPU and this build can run variant `name`."""
    return bool(call("isa_available", name))


def available_isas() -> list[str]:
    """Variants that can run here, best first."""
    return [n for n in ISAS if isa_available(n)]


def set_isa(name: str) -> None:
    """Forces variant `name` ("auto" = best available); raises DeployError if it cannot run here."""
    try:
        call("set_isa", name)
    except Exception as e:
        raise DeployError(str(e).strip()) from None


@contextmanager
def use_isa(name: str) -> Iterator[None]:
    """Runs the block with variant `name`, restoring the previous one afterwards."""
    before = isa()
    set_isa(name)
    try:
        yield
    finally:
        set_isa(before)


CONV1X1_PATHS = ("auto", "gather", "direct")


def conv1x1_path() -> str:
    """How sparse 1x1/stride-1 convs read their input: "auto" (by shape), "gather" or "direct"."""
    return str(call("conv1x1_path"))


def set_conv1x1_path(name: str) -> None:
    """Forces the 1x1 path (benchmarks and tests compare them); "auto" restores the choice by shape.

    "gather" copies tiles of 64 positions of every channel into a per-thread buffer, "direct" reads
    the input in place (packing a copy first when it is not 64-byte aligned).
    """
    if name not in CONV1X1_PATHS:
        raise DeployError(f"conv1x1 path must be one of {CONV1X1_PATHS}, got {name!r}")
    call("set_conv1x1_path", name)


@contextmanager
def use_conv1x1_path(name: str) -> Iterator[None]:
    """Runs the block with 1x1 path `name`, restoring the previous one afterwards."""
    before = conv1x1_path()
    set_conv1x1_path(name)
    try:
        yield
    finally:
        set_conv1x1_path(before)


def set_num_threads(n: int) -> None:
    """Threads used by every kernel (default: CPUs in the process's affinity mask)."""
    call("set_num_threads", int(n))


def get_num_threads() -> int:
    return int(call("get_num_threads"))


def set_spin_us(us: int) -> None:
    """Microseconds an idle kernel worker polls for the next layer before it sleeps (0: sleep at once)."""
    call("set_spin_us", int(us))


def get_spin_us() -> int:
    return int(call("get_spin_us"))


def variants() -> list[str]:
    """Every "op-format-isa" variant compiled into the library, in kernels.inc order."""
    return [str(v) for v in call("variants")]
