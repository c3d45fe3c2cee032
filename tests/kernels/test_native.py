"""The C++ test binary (tests/kernels/native) under ASan+UBSan and as aarch64 NEON under qemu.

The binary runs its own cases and the Python kernel tests' cases (native/matrix.cc) under every
ISA variant built: under qemu that is the NEON coverage the Python matrices skip on x86.
Both go through kernels/ci_native_tests.sh; a missing toolchain skips with the script's reason,
except in CI ($CI set, as .ci/run does, which installs the toolchains), where it fails.
The first run compiles the kernels twice (minutes; .ci/run starts these builds in the background
and the script waits for them); later runs rebuild incrementally.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from .conftest import REPO

SCRIPT = REPO / "kernels" / "ci_native_tests.sh"


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["asan", "aarch64"])
def test_native_binary(mode: str) -> None:
    r = subprocess.run(["sh", str(SCRIPT), mode], capture_output=True, text=True, timeout=2700)
    if r.returncode == 77:
        why = r.stdout.strip().splitlines()[-1]
        if os.environ.get("CI"):
            pytest.fail(f"{why}; CI={os.environ['CI']!r} requires it")
        pytest.skip(why)
    assert r.returncode == 0, f"{SCRIPT.name} {mode} failed:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
    assert "OK:" in r.stdout and "0 failures" in r.stdout, r.stdout
