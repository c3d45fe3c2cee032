"""Prepare, on a CPU machine with nvcc, what benchmarks/gpu_check_tvm.sh needs on the GPU machine.

Writes .devcarry/ (git-ignored through .git/info/exclude):
  compact.pt           the example ticket compacted (torch reference and cuDNN baseline)
  tvm-cuda-sparse/     the example ticket exported with --target cuda --arch ARCH
  tvm-runtime.tar.xz   this machine's apache-tvm package without its compiler library, so the
                       GPU machine (which has no apache-tvm, and no network) runs TVM runtime-only

    python benchmarks/gpu_prepare.py [--ticket ticket.pt] [--arch sm_90]

The carried folder must stay under the device tool's 64 MiB limit; the script prints its size.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _slim_tvm(dest: Path) -> None:
    import tvm
    src = Path(tvm.__file__).parent
    drop = {"3rdparty", "include", "src", "__pycache__", "libtvm_compiler.so"}

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        return None if set(Path(info.name).parts) & drop else info
    with tarfile.open(dest, "w:xz") as tar:
        tar.add(src, arcname="tvm", filter=keep)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ticket", default=None, help="ticket to use (default: the built-in example)")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--out", default=str(REPO / ".devcarry"))
    args = ap.parse_args()

    import st_deploy
    out = Path(args.out)
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        ticket = args.ticket
        if ticket is None:
            sd = st_deploy.make_example(Path(d) / "example")
            ticket = st_deploy.pack(sd, Path(d) / "ticket.pt")
        compacted = st_deploy.compact(ticket)
        st_deploy.save_ticket(compacted.ticket, out / "compact.pt", force=True)
        st_deploy.export(ticket, target=f"cuda --arch {args.arch}", out=out / "tvm-cuda-sparse", force=True)
    _slim_tvm(out / "tvm-runtime.tar.xz")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
