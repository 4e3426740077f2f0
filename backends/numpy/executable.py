"""The NumPy reference interpreter: runs any verified graph node by node.

Values are freed after their last use (as torch.fx's Interpreter does), kernel failures are
re-raised as LpdcExecutionError naming the node, and an optional observer sees every node's
outputs (calibration and debugging hook).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from ...errors import LpdcError, LpdcExecutionError, LpdcUnsupportedError
from ...ir import Graph, Node, Value, dtypes
from .kernels import get_kernel

if TYPE_CHECKING:
    from ...passes.plan_memory import MemoryPlan

Observer = Callable[[Node, list[np.ndarray]], None]


@dataclass(frozen=True)
class NodeTiming:
    """Wall time of one node in a profiled run."""

    name: str
    op: str
    seconds: float
    primitive: str = ""
    fused: tuple[str, ...] = ()  # later nodes computed by the same kernel: their time is in this one


class Executable:
    """A graph ready to run on the NumPy backend: `run({name: array}) -> {name: array}`."""

    target_name = "numpy"

    def __init__(self, graph: Graph, memory_plan: MemoryPlan | None = None) -> None:
        graph.verify()
        self.graph = graph
        # Opt-in: run every activation out of one arena laid out by plan-memory (checks the plan).
        self.memory_plan = memory_plan
        self._kernels = []
        for node in graph.nodes:
            k = get_kernel(node.op)
            if k is None:
                raise LpdcUnsupportedError(f"op '{node.op}' has no NumPy kernel", where=f"node '{node.name}'")
            self._kernels.append(k)
        self._last_use = _last_uses(graph)

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.graph.outputs]

    def run(self, inputs: Mapping[str, np.ndarray], *, observer: Observer | None = None) -> dict[str, np.ndarray]:
        """Execute the graph; inputs are checked against the graph's input types first."""
        outs, _ = self._execute(inputs, observer, timed=False)
        return outs

    def profile(
        self, inputs: Mapping[str, np.ndarray], repeats: int = 1
    ) -> tuple[dict[str, np.ndarray], list[NodeTiming]]:
        """Run `repeats` times; per-node wall times are the median over the repeats."""
        runs = [self._execute(inputs, None, timed=True) for _ in range(max(1, repeats))]
        per_node = np.median(np.array([[t.seconds for t in r[1]] for r in runs]), axis=0)
        timings = [replace(t, seconds=float(s)) for t, s in zip(runs[0][1], per_node, strict=True)]
        return runs[-1][0], timings

    # ---- internals --------------------------------------------------------------------------
    def _execute(
        self, inputs: Mapping[str, np.ndarray], observer: Observer | None, timed: bool
    ) -> tuple[dict[str, np.ndarray], list[NodeTiming]]:
        env: dict[Value, np.ndarray] = self._bind_inputs(inputs)
        arena = self.memory_plan.new_arena() if self.memory_plan is not None else None
        if arena is not None:
            env = {v: arena.place(v, a) for v, a in env.items()}
        keep = set(self.graph.outputs)
        timings: list[NodeTiming] = []
        for i, (node, k) in enumerate(zip(self.graph.nodes, self._kernels, strict=True)):
            args = [None if v is None else env[v] for v in node.inputs]
            t0 = time.perf_counter()
            results = self._call(node, k, args)
            if timed:
                timings.append(
                    NodeTiming(node.name, node.op, time.perf_counter() - t0, node.attrs.get("primitive", ""))
                )
            for v, r in zip(node.outputs, results, strict=True):
                env[v] = r if arena is None else arena.place(v, r)
            if observer is not None:
                observer(node, results)
            for v in self._last_use.get(i, ()):
                if v not in keep:
                    env.pop(v, None)
        if arena is not None:  # outputs must not alias the arena
            return {v.name: env[v].copy() for v in self.graph.outputs}, timings
        return {v.name: env[v] for v in self.graph.outputs}, timings

    def _call(self, node: Node, k, args: list[np.ndarray | None]) -> list[np.ndarray]:
        try:
            results = k(node, args, self.graph)
        except LpdcError:
            raise
        except Exception as e:  # a kernel bug or numeric failure: name the node, keep the cause
            raise LpdcExecutionError(f"{type(e).__name__}: {e}", where=f"node '{node.name}' ({node.op})") from e
        out = []
        for v, r in zip(node.outputs, results, strict=True):
            want = dtypes.to_numpy(v.type.dtype)
            r = np.asarray(r)
            if r.shape != v.type.shape:
                raise LpdcExecutionError(
                    f"kernel produced shape {list(r.shape)} for %{v.name} typed {list(v.type.shape)}",
                    where=f"node '{node.name}' ({node.op})",
                )
            out.append(r if r.dtype == want else r.astype(want))
        return out

    def _bind_inputs(self, inputs: Mapping[str, np.ndarray]) -> dict[Value, np.ndarray]:
        known = {v.name for v in self.graph.inputs}
        extra = sorted(set(inputs) - known)
        if extra:
            raise LpdcExecutionError(f"unknown input {extra[0]!r} (graph inputs: {', '.join(sorted(known))})")
        env: dict[Value, np.ndarray] = {}
        for v in self.graph.inputs:
            if v.name not in inputs:
                raise LpdcExecutionError(f"missing input {v.name!r} of type {v.type.dtype}{list(v.type.shape)}")
            arr = np.asarray(inputs[v.name])
            if arr.shape != v.type.shape:
                raise LpdcExecutionError(f"input {v.name!r} has shape {list(arr.shape)}, expected {list(v.type.shape)}")
            want = dtypes.to_numpy(v.type.dtype)
            if arr.dtype != want:
                if not np.can_cast(arr.dtype, want, casting="same_kind"):
                    raise LpdcExecutionError(f"input {v.name!r} has dtype {arr.dtype}, expected {want}")
                arr = arr.astype(want)
            env[v] = arr
        return env


def _last_uses(g: Graph) -> dict[int, list[Value]]:
    """For each node index, the values whose last reader it is (freed right after it runs)."""
    last: dict[Value, int] = {}
    for i, node in enumerate(g.nodes):
        for v in node.inputs:
            if v is not None:
                last[v] = i
    out: dict[int, list[Value]] = {}
    for v, i in last.items():
        out.setdefault(i, []).append(v)
    return out


def compile_numpy(graph: Graph, *, plan_memory: bool = False) -> Executable:
    """The NumPy backend's entry point; `plan_memory` runs activations out of one planned arena."""
    if not plan_memory:
        return Executable(graph)
    from ...passes.plan_memory import plan_memory as plan

    return Executable(graph, plan(graph))
