"""Plan a graph into TVM kernels and NumPy fallbacks, schedule the kernels, build one module.

Every node becomes a `Step`: a call of one function of the built library (identical kernels,
e.g. repeated ResNet blocks, share one function) or, where lower.py has no kernel, the NumPy
reference kernel (the reason is recorded). Weights are packed once here and bound as arguments.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import LpdcTargetError, LpdcUnsupportedError
from ...ir import Graph, Node, Value
from ..numpy.executable import NodeTiming
from .lower import Lowered, lower_node
from .target import TvmTarget

log = logging.getLogger(__name__)

# progress(description, total) -> tick(): the CLI's tqdm bar; library code stays silent.
Progress = Callable[[str, int], Callable[[], None]]
# Ops that only carry data through; the fallback handles them at no real cost.
_SKIP = ("const",)


@dataclass
class Step:
    """One node at run time: `func` in the library, or None for the NumPy reference kernel."""

    node: Node
    func: str | None
    args: list[Value | np.ndarray] = field(default_factory=list)
    reason: str = ""
    fused: list[Node] = field(default_factory=list)  # later nodes computed inside this kernel
    nchw: tuple[int, ...] = ()  # positions in args read NCHW, not NHWC (Lowered.nchw_args)

    def reads_nhwc(self, i: int) -> bool:
        """Whether value argument `i` is passed NHWC (4-D activations; others are as stored)."""
        return i not in self.nchw

    def reads(self) -> list[Value]:
        """The values the step reads at run time: a kernel's value arguments (a fused node's
        inputs included, its intermediate results not), else its node's inputs."""
        if self.func is not None:
            return [a for a in self.args if isinstance(a, Value)]
        return [v for v in self.node.inputs if v is not None]

    def timing(self, seconds: float, primitive: str) -> NodeTiming:
        """A profile record of this step, naming the nodes fused into its kernel."""
        return NodeTiming(self.node.name, self.node.op, seconds, primitive, tuple(n.name for n in self.fused))

    @property
    def output(self) -> Value:
        """The value the step writes: its node's output, or the last fused node's."""
        return self.fused[-1].output if self.fused else self.node.output


@dataclass
class Plan:
    steps: list[Step]
    kernels: dict[str, Lowered]  # function name -> lowered kernel (one per distinct key)
    # node name -> dense or sparse kernel, measured times, why (see sparse_select.py)
    sparse_choices: dict[str, dict[str, Any]] = field(default_factory=dict)
    # producer output -> (concat output, channel offset): written into the concat's buffer, whose
    # concat runs no step (concat_inplace.py; only the static program runs such plans)
    placements: dict[Value, tuple[Value, int]] = field(default_factory=dict)

    @property
    def kernel_keys(self) -> set[tuple]:
        """What the plan's kernels compute and how (equal sets: the same library)."""
        return {low.key for low in self.kernels.values()}

    @property
    def fallbacks(self) -> dict[str, str]:
        """node name -> why it runs on NumPy."""
        return {s.node.name: s.reason for s in self.steps if s.func is None and s.node.op not in _SKIP}


def kernel_name(index: int, node: Node) -> str:
    """The library function of the `index`-th distinct kernel, first used by `node`."""
    return f"k{index}_{node.op}_{re.sub(r'[^A-Za-z0-9_]', '_', node.name)[:40]}"


def plan_graph(g: Graph, tt: TvmTarget, knobs: dict[str, Any] | None = None,
               only: set[str] | None = None, sparse: str | dict[str, str] = "auto",
               overrides: dict[str, Lowered] | None = None, fuse_depthwise: bool = False) -> Plan:
    """Lower every node it can; identical kernels get one function. `knobs`: node name ->
    ConvKnobs overriding that conv's default register tile (the tuning hook). `only`: the names
    of the nodes to plan (a heterogeneous plan's CPU side); the others get no step. `sparse`:
    dense or sparse kernels for pruned FC / conv ("auto", "measure", "off", "on": sparse_select.py),
    or node name -> "sparse" | "dense" (earlier decisions replayed: an artifact's).
    `overrides`: node name -> the kernel to use when the node stays dense (variants.py's pick).
    `fuse_depthwise`: a depthwise conv and the 1x1 conv reading it become one kernel where
    dw_pw_fusion.pointwise_partner allows (CPU targets)."""
    from .dw_pw_fusion import is_depthwise, lower_depthwise_pointwise, pointwise_partner
    from .sparse_select import pick_sparse

    choices: dict[str, dict[str, Any]] = {}
    steps: list[Step] = []
    kernels: dict[str, Lowered] = {}
    by_key: dict[tuple, str] = {}
    absorbed: set[str] = set()
    knobs, overrides, vec = knobs or {}, overrides or {}, max(tt.vec, 4)

    def sparse_pick(node: Node) -> bool | None:
        if isinstance(sparse, dict):
            return {"sparse": True, "dense": False}.get(sparse.get(node.name, ""))
        return pick_sparse(node, g, tt, knobs.get(node.name), sparse, choices)

    def partner(node: Node) -> tuple[Node, Any] | None:
        if not (fuse_depthwise and tt.kind == "cpu" and is_depthwise(node, g)) or len(node.output.users) != 1:
            return None
        pw = node.output.users[0]
        if only is not None and pw.name not in only:
            return None
        return pointwise_partner(node, g, knobs.get(pw.name), overrides.get(pw.name), sparse_pick(pw),
                                 vec, tt.registers)

    for node in g.nodes:
        if node.op in _SKIP or (only is not None and node.name not in only) or node.name in absorbed:
            continue
        try:
            use_sparse = sparse_pick(node)
            pair = None if use_sparse else partner(node)
            if pair is not None:
                low = lower_depthwise_pointwise(node, *pair, g)
            else:
                low = overrides.get(node.name) if not use_sparse else None
                low = low or lower_node(node, g, vec, knobs.get(node.name), tt.registers, sparse=use_sparse)
            if only is not None and any(n.name not in only for n in low.absorbs):
                low = lower_node(node, g, vec, knobs.get(node.name), tt.registers, fuse=False)
        except LpdcUnsupportedError as e:
            steps.append(Step(node, None, reason=e.message if hasattr(e, "message") else str(e)))
            continue
        absorbed.update(n.name for n in low.absorbs)
        name = by_key.get(low.key)
        if name is None:
            name = by_key[low.key] = kernel_name(len(kernels), node)
            kernels[name] = low
        steps.append(Step(node, name, low.args, fused=list(low.absorbs), nchw=low.nchw_args))
    return Plan(steps, kernels, choices)


def build_module(plan: Plan, tt: TvmTarget, parallel: bool = True, progress: Progress | None = None,
                 tuned: dict[str, Any] | None = None) -> Any:
    """Schedule every kernel for `tt` and compile them into one TVM Executable.

    `parallel=False` leaves every loop serial: the code then needs no TVM runtime thread pool
    (`__TVMBackendParallelLaunch`), so a bare C program can call it (see qemu.py). `progress`
    ticks once per kernel scheduled and once when the module is built. `tuned`: kernel name ->
    an already scheduled PrimFunc (meta_schedule's, ms_tuned.py) used instead of the template.
    """
    import tvm
    from tvm import te

    t0 = time.perf_counter()
    tick = progress("TVM kernels", len(plan.kernels) + 1) if progress is not None else None
    funcs = {}
    for name, low in plan.kernels.items():
        f = te.create_prim_func(low.tensors).with_attr("global_symbol", name)
        if "out_channels" in low.info:  # writes a window of a concat's buffer
            from .concat_inplace import strided_output

            f = strided_output(f, low.info["out_channels"])
        if tuned and name in tuned and "out_channels" not in low.info:  # meta_schedule's kernel was faster
            funcs[name] = tuned[name].with_attr("global_symbol", name)
        else:
            funcs[name] = _schedule_cpu(f, low, tt, parallel) if tt.kind == "cpu" else f
        if tick is not None:
            tick()
    mod = tvm.IRModule(funcs)
    target = tt.tvm()
    if tt.kind == "gpu":
        from .schedules.generic import schedule_gpu

        mod = schedule_gpu(mod, target)
    try:
        ex = tvm.compile(mod, target=target)
    except Exception as e:  # noqa: BLE001 - report TVM's failure as ours, naming the kernels
        raise LpdcTargetError(f"TVM could not build the {len(funcs)} kernels for {tt.name}: "
                              f"{str(e).splitlines()[0][:300]}") from e
    if tick is not None:
        tick()
    log.info("built %d TVM kernels for %s in %.1f s", len(funcs), tt.name, time.perf_counter() - t0)
    return ex


class _SerialSchedule:
    """A Schedule whose `parallel` does nothing; every other primitive is the real one."""

    def __init__(self, sch: Any) -> None:
        self._sch = sch

    def parallel(self, loop: Any) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sch, name)


def _schedule_cpu(f: Any, low: Lowered, tt: TvmTarget, parallel: bool = True) -> Any:
    from tvm import s_tir

    from .schedules.generic import schedule_generic_cpu
    from .schedules.x86_conv import schedule_conv, schedule_depthwise, schedule_depthwise_pointwise, schedule_fc

    vec = max(tt.vec, 4)

    def new_schedule() -> Any:
        return s_tir.Schedule(f) if parallel else _SerialSchedule(s_tir.Schedule(f))

    sch = new_schedule()
    try:
        if low.schedule == "conv":
            schedule_conv(sch, low.info["shape"], low.info["knobs"])
        elif low.schedule == "depthwise":
            schedule_depthwise(sch, low.info["shape"], vec)
        elif low.schedule == "dw_pw":
            schedule_depthwise_pointwise(sch, low.info["dw_shape"], low.info["shape"], low.info["knobs"], vec)
        elif low.schedule == "fc":
            schedule_fc(sch, low.info["kb"], vec)
        elif low.schedule == "qconv":
            from .int8_conv import schedule_qconv

            schedule_qconv(sch, low.info["knobs"], low.info["intrinsic"], low.info["kw"])
        elif low.schedule == "sparse_fc":
            from .sparse_fc import schedule_sparse_fc

            schedule_sparse_fc(sch, low.info["kb"], vec)
        elif low.schedule == "sparse_conv":
            from .sparse_conv import schedule_sparse_conv

            schedule_sparse_conv(sch, low.info["shape"], low.info["geometry"], vec)
        elif low.schedule == "winograd":
            from .winograd import schedule_winograd

            schedule_winograd(sch, low.info["shape"], low.info["m"], low.info["vec"], low.info["tiles"])
        else:
            schedule_generic_cpu(sch, vec)
    except Exception as e:  # noqa: BLE001 - a template that does not fit this shape: degrade, never fail
        log.warning("schedule %s does not fit %s (%s); using the generic schedule",
                    low.schedule, f.attrs["global_symbol"], str(e).splitlines()[0][:200])
        sch = new_schedule()
        try:
            schedule_generic_cpu(sch, vec)
        except Exception:  # noqa: BLE001 - the unscheduled function is still correct
            return f
    return sch.mod["main"].with_attr("global_symbol", f.attrs["global_symbol"])
