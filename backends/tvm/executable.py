"""The TVM backend's Executable: calls the built library's functions in graph order.

NumPy arrays are passed to TVM functions directly (DLPack, ~0.5 us a call), so the runner is a
small Python loop. Every array handed to TVM is 64-byte aligned (the generated code may assume
it). 4-D activations live NHWC between TVM kernels; a NumPy-fallback node gets NCHW copies, and
the runner converts a value only when a consumer needs the other layout (cached per run).
With a memory plan (`compile_tvm(..., plan_memory=True)`) kernel outputs and layout copies go into
one preallocated arena at plan-memory's offsets (see arena.py); outputs are copied out of it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ...errors import LpdcError, LpdcExecutionError, LpdcTargetError
from ...ir import Graph, Value, dtypes
from ..numpy.executable import Executable as NumpyExecutable
from ..numpy.executable import NodeTiming
from ..numpy.kernels import get_kernel
from ..run_support import GraphIO, last_reads, median_profile
from .build import Plan, Step
from .lower import is_act4, nhwc_shape

if TYPE_CHECKING:
    from ...passes.plan_memory import MemoryPlan


def aligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous float32 copy of `a` (or `a` itself) whose data starts on 64 bytes."""
    a = np.asarray(a)
    if a.flags.c_contiguous and a.flags.writeable and a.ctypes.data % 64 == 0:
        return a
    out = aligned_empty(a.shape, a.dtype)
    out[...] = a
    return out


def aligned_empty(shape: tuple[int, ...], dtype: Any = np.float32, align: int = 64) -> np.ndarray:
    dt = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    buf = np.empty(n * dt.itemsize + align, np.uint8)
    off = (-buf.ctypes.data) % align
    return buf[off:off + n * dt.itemsize].view(dt).reshape(shape)


class TvmExecutable(GraphIO):
    """A graph built by the TVM backend: `run({name: array}) -> {name: array}`, `.profile`."""

    def __init__(self, graph: Graph, plan: Plan, lib: Any, target_name: str, runs_here: bool,
                 build_seconds: float = 0.0, memory_plan: MemoryPlan | None = None) -> None:
        self.graph = graph
        self.plan = plan
        self.lib = lib
        self.target_name = target_name
        self.runs_here = runs_here
        self.build_seconds = build_seconds
        self._ref = NumpyExecutable(graph)  # input checking and the fallback interpreter's contract
        self._funcs: dict[str, Any] = {}
        self._steps = [self._bind(s) for s in plan.steps]
        self._dead_after = last_reads([s.reads() for s in plan.steps], set(graph.outputs))
        self._arena = None
        if runs_here:
            from .threads import ensure_threads

            self.threads = ensure_threads()
        if memory_plan is not None:  # opt-in: activations live in one arena, allocated once here
            from .arena import TvmArena

            self._arena = TvmArena(memory_plan, plan.steps, graph.outputs)
        self._program = None  # the fast path when every step is a TVM kernel (program.py)
        if runs_here and memory_plan is None:
            from .program import StaticProgram

            self._program = StaticProgram.build(graph, [s for s, _ in self._steps], self._func, plan.placements)
        if plan.placements and self._program is None:
            raise LpdcError("a plan with concats computed in place needs the static program", where=graph.name)

    @property
    def runner(self) -> str:
        """"static" (program.py: calls and buffers fixed at build time) or "general" (this loop)."""
        return "static" if self._program is not None else "general"

    @property
    def memory_plan(self) -> MemoryPlan | None:
        return None if self._arena is None else self._arena.plan

    @property
    def arena_bytes(self) -> int | None:
        """Bytes of the activation arena (plan-memory's size), None when running without a plan."""
        return None if self._arena is None else self._arena.plan.arena_bytes

    @property
    def arena_misses(self) -> list[str]:
        """Values the last run wrote outside the arena because their slot was still in use."""
        return [] if self._arena is None else list(self._arena.misses)

    @property
    def fallbacks(self) -> dict[str, str]:
        return self.plan.fallbacks

    @property
    def sparse_choices(self) -> dict[str, dict[str, Any]]:
        """node -> {"picked": "sparse" | "dense", "dense_s", "sparse_s", "density", "how"} (sparse_select.py)."""
        return self.plan.sparse_choices

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._execute(inputs, None)

    def profile(self, inputs: Mapping[str, np.ndarray],
                repeats: int = 1) -> tuple[dict[str, np.ndarray], list[NodeTiming]]:
        """Run `repeats` times; per-node times are medians (layout conversions count to the consumer)."""
        return median_profile(lambda times: self._execute(inputs, times), repeats)

    # ---- internals --------------------------------------------------------------------------
    def _bind(self, s: Step) -> tuple[Step, Any]:
        if s.func is None:
            return s, get_kernel(s.node.op)
        s.args = [a if isinstance(a, Value) else aligned(_weight(a)) for a in s.args]
        return s, None

    def _func(self, name: str) -> Any:
        if not self.runs_here:
            raise LpdcTargetError(f"target {self.target_name!r} builds code for another machine; it cannot run "
                                  "on this host (deploy the artifact's library there)", where=self.target_name)
        f = self._funcs.get(name)
        if f is None:
            f = self._funcs[name] = self.lib[name]
        return f

    def _execute(self, inputs: Mapping[str, np.ndarray], times: list[NodeTiming] | None) -> dict[str, np.ndarray]:
        if not self.runs_here:
            self._func("")
        if self._program is not None:
            return self._program.run(self._ref._bind_inputs(inputs), times)
        env: dict[tuple[Value, bool], np.ndarray] = {}  # (value, stored NHWC?) -> array
        arena = self._arena
        if arena is not None:
            arena.reset()
        for v, a in self._ref._bind_inputs(inputs).items():
            env[(v, False)] = a
        for i, (s, kernel) in enumerate(self._steps):
            t0 = time.perf_counter()
            if s.func is None:
                self._run_fallback(s, kernel, env, i)
            else:
                self._run_tvm(s, env, i)
            if times is not None:
                times.append(s.timing(time.perf_counter() - t0, "tvm" if s.func else "numpy"))
            for v in self._dead_after[i]:  # free activations after their last reader (both layouts)
                env.pop((v, False), None)
                env.pop((v, True), None)
        if arena is not None:
            return {v.name: arena.copy_out(self._get(v, False, env)) for v in self.graph.outputs}
        return {v.name: self._get(v, False, env) for v in self.graph.outputs}

    def _get(self, v: Value, nhwc: bool, env: dict, step: int | None = None) -> np.ndarray:
        """`v` in the requested storage (NHWC only applies to 4-D NCHW activations). With an arena
        and the reading `step`, a layout copy goes into v's slot when the slot is free."""
        nhwc = nhwc and is_act4(v)
        got = env.get((v, nhwc))
        if got is not None:
            return got
        other = env.get((v, not nhwc))
        if other is None:
            data = self.graph.const_data(v)
            if data is None:
                raise LpdcExecutionError(f"value %{v.name} was not computed", where=f"value '{v.name}'")
            other = env[(v, False)] = np.asarray(data)
            if not nhwc:
                return other
        moved = other.transpose(0, 2, 3, 1) if nhwc else other.transpose(0, 3, 1, 2)
        conv = None
        if self._arena is not None and step is not None:
            conv = self._arena.place(v, nhwc, moved, step)
        if conv is None:
            conv = aligned(moved)
        env[(v, nhwc)] = conv
        return conv

    def _run_tvm(self, s: Step, env: dict, step: int | None = None) -> None:
        args = [aligned(self._get(a, s.reads_nhwc(i), env, step)) if isinstance(a, Value) else a
                for i, a in enumerate(s.args)]
        out_v = s.output
        out = None if self._arena is None or step is None else self._arena.output_slot(s, step, args)
        if out is None:
            out = aligned_empty(nhwc_shape(out_v), dtypes.to_numpy(out_v.type.dtype))
        try:
            self._func(s.func)(*args, out)
        except LpdcError:
            raise
        except Exception as e:  # noqa: BLE001 - a TVM runtime failure: name the node
            raise LpdcExecutionError(f"{type(e).__name__}: {e}", where=f"node '{s.node.name}' ({s.node.op})") from e
        if self._arena is not None and out is self._arena.slot(out_v, is_act4(out_v)):
            self._arena.hold(out_v)
        env[(out_v, is_act4(out_v))] = out

    def _run_fallback(self, s: Step, kernel: Any, env: dict, step: int | None = None) -> None:
        args = [None if v is None else self._get(v, False, env, step) for v in s.node.inputs]
        results = self._ref._call(s.node, kernel, args)
        for v, r in zip(s.node.outputs, results, strict=True):
            env[(v, False)] = r if self._arena is None else self._arena.adopt(v, r)


def _weight(a: np.ndarray) -> np.ndarray:
    """A bound argument as the kernel takes it: float32, except integer arrays (sparse FC indices,
    int8 weights, requantize multipliers) and float64 scales, which keep their type."""
    a = np.asarray(a)
    return a if a.dtype.kind in "iu" or a.dtype == np.float64 else np.asarray(a, np.float32)
