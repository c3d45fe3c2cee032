"""Board side: TVM's RPC server plus one function, st_deploy.board_facts, that reports the board.

This file runs on the board by itself (`python3 server.py --tracker HOST:PORT --key KEY`): it
imports only the standard library and TVM, so a board needs no st-deploy, only TVM's runtime.
The facts are read there, in the serving process: uname, /proc/cpuinfo, the core count, the OS
and TVM's version, and whether the process runs under an emulator. `emulated` is true only on
evidence (the launcher `st-deploy board` says so, or the kernel sees a qemu process, or
/proc/cpuinfo describes another architecture than the one Python runs on); a real board has none.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

FACTS_FUNC = "st_deploy.board_facts"
EMULATOR_ENV = "ST_DEPLOY_BOARD_EMULATOR"
_address = None  # host:port this server listens on (or reports to its tracker), set by main()


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _cpuinfo_fields(text: str) -> dict:
    out: dict = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in out:
            out[key.strip()] = value.strip()
    return out


def _cpu_model(fields: dict) -> str | None:
    for key in ("model name", "Model", "Hardware", "cpu model"):
        if fields.get(key):
            return fields[key]
    if "CPU implementer" in fields:  # arm64 Linux names no model, only these ids
        return f"ARM implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')}"
    return None


def emulation_evidence(machine: str, cpuinfo: str, status: str) -> list[str]:
    """Why this process is emulated, one reason per finding; empty on a real CPU."""
    out = []
    if os.environ.get(EMULATOR_ENV):
        out.append(f"started by st-deploy board under {os.environ[EMULATOR_ENV]}")
    name = next((line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith("Name:")), "")
    if name.startswith("qemu-"):
        out.append(f"the kernel runs this process as {name}")
    fields = _cpuinfo_fields(cpuinfo)
    x86_cpu = "vendor_id" in fields or "flags" in fields
    arm_cpu = "CPU implementer" in fields or "Features" in fields
    if (machine in ("aarch64", "armv7l") and x86_cpu) or (machine in ("x86_64", "i686") and arm_cpu):
        out.append(f"/proc/cpuinfo describes another architecture than {machine}")
    return out


def board_facts() -> str:
    """JSON: what this board is, read here."""
    u = platform.uname()
    cpuinfo = _read("/proc/cpuinfo")
    fields = _cpuinfo_fields(cpuinfo)
    os_release = dict(line.split("=", 1) for line in _read("/etc/os-release").splitlines() if "=" in line)
    try:
        import tvm
        tvm_version = tvm.__version__
    except ImportError as e:  # the server runs TVM, so this only documents an odd board
        tvm_version = f"unknown ({e})"
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    evidence = emulation_evidence(u.machine, cpuinfo, _read("/proc/self/status"))
    return json.dumps({
        "machine": u.machine, "system": u.system, "release": u.release, "node": u.node,
        "cpu": _cpu_model(fields), "cores": cores,
        "board_model": _read("/proc/device-tree/model").strip("\x00\n ") or None,
        "os": os_release.get("PRETTY_NAME", "").strip('"') or None,
        "python": platform.python_version(), "tvm": tvm_version,
        "emulated": bool(evidence), "emulation": evidence, "server": _address,
    })


def _register() -> None:
    # Before serving: session processes are forked from this one and inherit the function.
    import tvm_ffi
    tvm_ffi.register_global_func(FACTS_FUNC, board_facts, override=True)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=9090)
    p.add_argument("--port-end", type=int, default=None, help="search [port, port-end) for a free port")
    p.add_argument("--tracker", default=None, help="HOST:PORT of a TVM RPC tracker to register with")
    # Without a tracker the key stays empty: clients that connect directly name none.
    p.add_argument("--key", default="", help="device key to register under (with --tracker)")
    p.add_argument("--custom-addr", default=None, help="address the tracker hands to clients")
    a = p.parse_args(argv)
    # TVM's rpc.Server re-executes sys.executable for its worker, which fails under qemu-user
    # without binfmt_misc (an aarch64 binary cannot be exec'd on the host); its worker's own
    # serving state runs in this process instead. Sessions are forked children (no exec).
    from tvm.rpc.server import PopenRPCServerState
    tracker = None
    if a.tracker:
        host, _, port = a.tracker.rpartition(":")
        tracker = (host, int(port))
    global _address
    _register()
    state = PopenRPCServerState(a.host, a.port, a.port_end or a.port + 1, tracker_addr=tracker, key=a.key,
                                custom_addr=a.custom_addr)
    _address = f"{a.custom_addr or a.host}:{state.port}"
    print(f"st-deploy board server listening on {a.host}:{state.port}", flush=True)
    state.thread.join()


if __name__ == "__main__":
    sys.exit(main())
