"""Schedules for the light kernels (pooling, elementwise, concat, softmax) and for GPUs.

CPU: inline padding stages, then for every remaining block parallelise the outer spatial loops
and vectorise the innermost spatial (channel) loop, moving reduction loops outside it first.
Every step is optional: a primitive that does not apply to a block is skipped, so this works on
any TE compute. GPU: dlight's fallback rule (one thread per output element, blocks of 256).
"""

from __future__ import annotations

import logging

import tvm
from tvm import s_tir

log = logging.getLogger(__name__)


def schedule_generic_cpu(sch: s_tir.Schedule, vec: int) -> None:
    """Parallel outer loops, vectorised channels, inlined pads; never fails (steps are optional)."""
    root = sch.get_sblock("root")
    for blk in sch.get_child_blocks(root):
        name = sch.get(blk).name_hint
        if name.startswith("pad") or name.endswith("pad_temp"):
            _try(lambda b=blk: sch.compute_inline(b))
    for blk in sch.get_child_blocks(root):
        _schedule_block(sch, blk, vec)


def _schedule_block(sch: s_tir.Schedule, blk: s_tir.SBlock, vec: int) -> None:
    loops = sch.get_loops(blk)
    kinds = [int(iv.iter_type) for iv in sch.get(blk).iter_vars]  # 0 = spatial, 2 = reduction
    if len(kinds) != len(loops):
        return
    spatial = [lp for lp, k in zip(loops, kinds, strict=True) if k == 0]
    red = [lp for lp, k in zip(loops, kinds, strict=True) if k != 0]
    inner = spatial[-1] if len(spatial) > 1 else None
    if inner is not None and red:
        _try(lambda: sch.reorder(*red, inner))
    if inner is not None:
        extent = int(sch.get(inner).extent)
        if extent % vec == 0 and extent > vec:
            _, v = sch.split(inner, [None, vec])
            _try(lambda: sch.vectorize(v))
        elif 1 < extent <= vec:
            _try(lambda: sch.vectorize(inner))
    outer = spatial[:-1][:2] if inner is not None else spatial[:1]
    if outer:
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
        _try(lambda: sch.parallel(fused))
    if red:  # after vectorize/parallel: they refuse a block whose init was split off
        _try(lambda: sch.decompose_reduction(blk, red[0]))


def _try(step) -> bool:
    try:
        step()
        return True
    except Exception as e:  # noqa: BLE001 - ScheduleError or a TVM RuntimeError: the step does not apply
        log.debug("generic schedule step skipped: %s", str(e).splitlines()[-1] if str(e) else e)
        return False


def schedule_gpu(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Bind every block of every function to GPU threads with dlight's fallback rule."""
    from tvm.s_tir import dlight as dl

    with target:
        return dl.ApplyDefaultSchedule(dl.gpu.Fallback())(mod)
