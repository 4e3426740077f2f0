"""The TVM backend's Executable: calls the built library's functions in graph order.

NumPy arrays are passed to TVM functions directly (DLPack, ~0.5 us a call), so the runner is a
small Python loop. Every array handed to TVM is 64-byte aligned (the generated code may assume
it). 4-D activations live NHWC between TVM kernels; a NumPy-fallback node gets NCHW copies, and
the runner converts a value only when a consumer needs the other layout (cached per run).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import LpdcError, LpdcExecutionError, LpdcTargetError
from ...ir import Graph, Value
from ..numpy.executable import Executable as NumpyExecutable
from ..numpy.executable import NodeTiming
from ..numpy.kernels import get_kernel
from .build import Plan, Step
from .lower import is_act4, nhwc_shape


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


class TvmExecutable:
    """A graph built by the TVM backend: `run({name: array}) -> {name: array}`, `.profile`."""

    def __init__(self, graph: Graph, plan: Plan, lib: Any, target_name: str, runs_here: bool,
                 build_seconds: float = 0.0) -> None:
        self.graph = graph
        self.plan = plan
        self.lib = lib
        self.target_name = target_name
        self.runs_here = runs_here
        self.build_seconds = build_seconds
        self._ref = NumpyExecutable(graph)  # input checking and the fallback interpreter's contract
        self._funcs: dict[str, Any] = {}
        self._steps = [self._bind(s) for s in plan.steps]
        self._dead_after = _dead_after(plan.steps, set(graph.outputs))

    @property
    def fallbacks(self) -> dict[str, str]:
        return self.plan.fallbacks

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.graph.outputs]

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._execute(inputs, None)

    def profile(self, inputs: Mapping[str, np.ndarray],
                repeats: int = 1) -> tuple[dict[str, np.ndarray], list[NodeTiming]]:
        """Run `repeats` times; per-node times are medians (layout conversions count to the consumer)."""
        runs = []
        for _ in range(max(1, repeats)):
            times: list[NodeTiming] = []
            outs = self._execute(inputs, times)
            runs.append((outs, times))
        med = np.median(np.array([[t.seconds for t in r[1]] for r in runs]), axis=0)
        first = runs[0][1]
        return runs[-1][0], [NodeTiming(t.name, t.op, float(s), t.primitive) for t, s in zip(first, med, strict=True)]

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
        env: dict[tuple[Value, bool], np.ndarray] = {}  # (value, stored NHWC?) -> array
        for v, a in self._ref._bind_inputs(inputs).items():
            env[(v, False)] = a
        for i, (s, kernel) in enumerate(self._steps):
            t0 = time.perf_counter()
            if s.func is None:
                self._run_fallback(s, kernel, env)
            else:
                self._run_tvm(s, env)
            if times is not None:
                times.append(NodeTiming(s.node.name, s.node.op, time.perf_counter() - t0, "tvm" if s.func else "numpy"))
            for v in self._dead_after[i]:  # free activations after their last reader (both layouts)
                env.pop((v, False), None)
                env.pop((v, True), None)
        return {v.name: self._get(v, False, env) for v in self.graph.outputs}

    def _get(self, v: Value, nhwc: bool, env: dict) -> np.ndarray:
        """`v` in the requested storage (NHWC only applies to 4-D NCHW activations)."""
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
        conv = aligned(other.transpose(0, 2, 3, 1) if nhwc else other.transpose(0, 3, 1, 2))
        env[(v, nhwc)] = conv
        return conv

    def _run_tvm(self, s: Step, env: dict) -> None:
        args = [aligned(self._get(a, True, env)) if isinstance(a, Value) else a for a in s.args]
        out_v = s.node.output
        out = aligned_empty(nhwc_shape(out_v))
        try:
            self._func(s.func)(*args, out)
        except LpdcError:
            raise
        except Exception as e:  # noqa: BLE001 - a TVM runtime failure: name the node
            raise LpdcExecutionError(f"{type(e).__name__}: {e}", where=f"node '{s.node.name}' ({s.node.op})") from e
        env[(out_v, is_act4(out_v))] = out

    def _run_fallback(self, s: Step, kernel: Any, env: dict) -> None:
        args = [None if v is None else self._get(v, False, env) for v in s.node.inputs]
        results = self._ref._call(s.node, kernel, args)
        for v, r in zip(s.node.outputs, results, strict=True):
            env[(v, False)] = r


def _weight(a: np.ndarray) -> np.ndarray:
    """A bound argument as the kernel takes it: float32, except integer index arrays (sparse FC)."""
    a = np.asarray(a)
    return a if a.dtype == np.int32 else np.asarray(a, np.float32)


def _dead_after(steps: list[Step], keep: set[Value]) -> list[list[Value]]:
    """For each step, the values whose last reader it is (never graph outputs)."""
    last: dict[Value, int] = {}
    for i, s in enumerate(steps):
        for v in s.node.inputs:
            if v is not None:
                last[v] = i
    dead: list[list[Value]] = [[] for _ in steps]
    for v, i in last.items():
        if v not in keep:
            dead[i].append(v)
    return dead
