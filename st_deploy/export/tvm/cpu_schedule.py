"""Parallel loops for the Relax ops our kernels leave to TVM on CPU targets (add, relu, resize,
concat, poolings, mean).

TVM 0.27's default build schedules none of them: each ran as one loop nest on one thread whatever
the artifact's thread count, and they grow with the batch while the kernels split over threads.
Each legalized op that is one spatial (or spatial-then-reduce) block gets its spatial loops
reordered outermost and all but the innermost fused into one parallel loop; the innermost stays
whole for LLVM's vectoriser. Ops under MIN_PARALLEL_ELEMENTS outputs keep TVM's loop: a parallel
launch costs microseconds. Measured on a SuperTickets classification ticket (90 % masks, llvm, 2
vCPUs, artifacts without and with this schedule timed in one run, own process each): batch 8,
2 threads 70.1 -> 63.3 ms, 1 thread 125 -> 118 ms; batch 1, 2 threads 9.17 -> 8.84 ms.

Fusing the ops first (the CPU pipeline's FuseOps/FuseTIR) and vectorising the fused loop was slower:
the fused resize chains ran 3-9x slower than the separate ops.
"""

from __future__ import annotations

from typing import Any

MIN_PARALLEL_ELEMENTS = 16384


def _parallel_outer_rule() -> Any:
    from tvm import s_tir, tirx
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base import ScheduleRule

    class ParallelOuter(ScheduleRule):
        def apply(self, func: Any, target: Any, _: bool) -> Any:
            if not isinstance(func, tirx.PrimFunc):
                return None
            sch = s_tir.Schedule(func)
            infos = normalize_prim_func(sch)
            if infos is None or len(infos) != 1:
                return None  # several blocks or opaque code: TVM's loop as it is
            kinds = infos[0].dom_kind()
            if not kinds or any(k not in "SR" for k in kinds):
                return None
            loops = sch.get_loops(infos[0].block_rv)
            spatial = [lp for lp, k in zip(loops, kinds) if k == "S"]
            reduce = [lp for lp, k in zip(loops, kinds) if k == "R"]
            outputs = 1
            for lp in spatial:
                extent = sch.get(lp).extent
                if not isinstance(extent, tirx.IntImm):
                    return None
                outputs *= int(extent)
            if not spatial or outputs < MIN_PARALLEL_ELEMENTS:
                return None
            sch.reorder(*spatial, *reduce)
            outer = spatial[:-1] or spatial
            sch.parallel(sch.fuse(*outer) if len(outer) > 1 else outer[0])
            return sch

    return ParallelOuter()


def schedule_cpu_ops(mod: Any, target: Any) -> Any:
    """`mod` with its Relax ops legalized to TIR and the large ones given parallel loops; TVM's
    default build then leaves the legalized functions as they are."""
    import tvm
    from tvm.relax import transform
    from tvm.s_tir import dlight
    with target:
        return tvm.transform.Sequential([transform.LegalizeOps(),
                                         dlight.ApplyDefaultSchedule(_parallel_outer_rule())])(mod)
