"""The TVM backend: lpdc IR -> TE computes + project schedules -> one TVM library per graph.

`compile_tvm(graph, target)` returns a TvmExecutable for x86 (runs here), a72 / a53 / a72+a53
(AArch64 cross-compiled; artifacts only) or cuda (CUDA source; artifacts only). TVM itself is
imported only when this function is called, so `import lpdc` stays fast.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ...errors import LpdcTargetError
from ...ir import Graph
from ..target import Target

if TYPE_CHECKING:
    from .build import Progress

log = logging.getLogger(__name__)


def tvm_device(tgt: Target) -> str:
    """The single build device for a target: a72+a53 builds one Cortex-A53 library (the A53's
    ISA is a subset of the A72's, so the same code runs on both clusters)."""
    names = [d.name for d in tgt.devices]
    if set(names) == {"a72", "a53"}:
        return "a53"
    if len(names) != 1 or names[0] not in ("x86", "a72", "a53", "cuda"):
        raise LpdcTargetError(f"the TVM backend builds for x86, a72, a53, a72+a53 or cuda, not {tgt.name!r}",
                              where=tgt.name)
    return names[0]


def compile_tvm(graph: Graph, target: str | Target = "x86", knobs: dict[str, Any] | None = None, *,
                plan_memory: bool = False, progress: Progress | None = None, sparse: str = "auto",
                variants: str = "default", ms_trials: int = 0, ms_layers: int = 3, ms_cache: str | None = None,
                concat_inplace: bool = True, fuse_depthwise: bool = True, check_variants: bool = True,
                **options: Any):
    """Lower, schedule and build `graph` (already optimised) for a TVM target.

    `knobs` maps conv node names to schedules.x86_conv.ConvKnobs (register tile, padding) that
    replace the defaults chosen from the layer's shape. `plan_memory`: run every activation out
    of one arena laid out by plan-memory (`exe.arena_bytes`). `progress(desc, total) -> tick`
    hears each kernel scheduled (the CLI draws a bar). `sparse`: dense or sparse kernels for
    pruned FC / conv layers: "auto" (FC by density), "measure" (time both here, keep the faster),
    "off", "on"; `exe.sparse_choices` records each decision (see sparse_select.py). `variants`:
    "default" (scored register tiles) or "measure" (time each conv's tile / Winograd variants here,
    keep the fastest; times cached on disk; `exe.variant_choices`, see variants.py); with
    `check_variants` the measured plan is then kept only if the whole model runs faster with it
    than with the default tiles (`exe.variant_check`, see variant_check.py). `ms_trials` > 0:
    tune the `ms_layers` heaviest conv / FC kernels with meta_schedule (traces cached in `ms_cache`),
    keep each only where it beats the template here; `exe.ms_kernels` records each (see ms_tuned.py).
    `concat_inplace`: channel concats run no kernel, their inputs' kernels write into the concat's
    buffer (concat_inplace.py), where the build runs here with every step a TVM kernel.
    `fuse_depthwise`: a depthwise conv and the 1x1 conv reading it run as one kernel on CPU
    targets (dw_pw_fusion.py); `exe.plan.steps` name the pairs (Step.fused). Not with
    `plan_memory`: its arena is laid out for the graph's own nodes, each writing its output.
    """
    from .build import build_module, plan_graph
    from .executable import TvmExecutable
    from .lower_quant import materialize_weights
    from .target import tvm_target

    tgt = Target(target)
    tt = tvm_target(tvm_device(tgt))
    t0 = time.perf_counter()
    graph = materialize_weights(graph)
    from .variants import select_variants

    fuse_depthwise = fuse_depthwise and not plan_memory and tt.kind == "cpu"
    keep_rows_outer = set()
    if fuse_depthwise and variants != "default":
        from .dw_pw_fusion import fusable_pointwise

        keep_rows_outer = fusable_pointwise(graph, max(tt.vec, 4), tt.registers)
    overrides, variant_choices = select_variants(graph, tt, variants, progress=progress, rows_outer=keep_rows_outer)

    def make_plan(chosen: dict[str, Any]) -> Any:
        p = plan_graph(graph, tt, knobs, sparse=sparse, overrides=chosen, fuse_depthwise=fuse_depthwise)
        if concat_inplace and tt.runs_here and not plan_memory:
            from .concat_inplace import place_concats

            p = place_concats(p, set(graph.outputs))
        return p

    memory = None
    if plan_memory:
        from ...passes.plan_memory import plan_memory as plan_arena

        memory = plan_arena(graph)
    plan, lib, variant_check = make_plan(overrides), None, {}
    default_plan = make_plan({}) if overrides and check_variants and tt.runs_here else None
    if default_plan is not None and default_plan.kernel_keys != plan.kernel_keys:  # the picks change something
        from .variant_check import keep_faster

        plan, lib, variant_check = keep_faster(graph, plan, default_plan, tt, lambda p, built: TvmExecutable(
            graph, p, built, tgt.name, True, memory_plan=memory))
        for rec in variant_choices.values():  # the picks run only if the measured plan won in the model
            rec["used"] = variant_check["kept"] == "measured"
    tuned, ms_kernels = {}, {}
    if ms_trials > 0:
        from .ms_tuned import tune_plan

        tuned, ms_kernels = tune_plan(plan, tt, ms_trials, ms_layers, ms_cache, progress)
    if lib is None or tuned:
        lib = build_module(plan, tt, progress=progress, tuned=tuned)
    seconds = time.perf_counter() - t0
    if plan.fallbacks:
        log.info("%d nodes run on the NumPy reference kernels: %s", len(plan.fallbacks), sorted(plan.fallbacks))
    exe = TvmExecutable(graph, plan, lib, tgt.name, tt.runs_here, seconds, memory_plan=memory)
    exe.tvm_target = tt
    exe.variant_choices = variant_choices
    exe.variant_check = variant_check
    exe.ms_kernels = ms_kernels
    return exe
