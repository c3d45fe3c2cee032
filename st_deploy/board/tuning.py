"""`st-deploy tune --tracker/--rpc`: which boards may be tuned on.

A cost table is only worth its measurements: times from an emulated board are the emulator's,
and a board that does not say what it is (a plain tvm.exec.rpc_server) cannot be told apart
from one. Both are refused with the reason before anything is measured.
"""

from __future__ import annotations

from typing import Any

from ..errors import DeployError


def tunable_board(rpc: str | None, tracker: str | None, key: str | None) -> dict[str, Any]:
    """The facts of a board that is real hardware, else a DeployError saying why not."""
    from ..bench.rpc import board_facts, connect
    facts = board_facts(connect(rpc, tracker, key))
    where = facts.get("server") or rpc or f"{tracker} key={key}"
    if facts.get("emulated") is None:
        raise DeployError(f"tune: the board at {where} does not say whether it is emulated ({facts.get('note')}); "
                          f"a cost table needs real hardware")
    if facts["emulated"]:
        raise DeployError(f"tune: the board at {where} is emulated ({'; '.join(facts.get('emulation') or [])}): "
                          f"its times are the emulator's, not an ARM core's; tune on a real board")
    return facts
