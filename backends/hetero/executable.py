"""Co-execution: run a device-annotated graph on a CPU (TVM) and a GPU (OpenCL) at once.

All activations live in host memory in the TVM side's storage (NHWC for 4-D activations). The
GPU reads and writes them through buffers over that memory (USE_HOST_PTR: zero-copy where host
and device share memory, as on the RK3399 and PoCL), and a value crosses from the GPU to the
CPU by waiting for its kernel and mapping its buffer. The order of work is fixed at build time:
every GPU kernel is enqueued as soon as its inputs exist, before the CPU takes its next layer,
so the GPU half of a split layer runs while the CPU computes the other half.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import LpdcExecutionError, LpdcTargetError
from ...ir import Graph, Value
from ..numpy.executable import NodeTiming
from ..opencl.build import GpuPlan
from ..opencl.executable import bind_step, kernel_buffers
from ..opencl.runtime import Runtime
from ..tvm.executable import TvmExecutable, aligned_empty
from ..tvm.lower import is_act4, nhwc_shape
from .plan import HeteroPlan


class HeteroExecutable:
    """`run(inputs)` on the CPU side's TVM library and the GPU side's OpenCL program together."""

    def __init__(self, graph: Graph, plan: HeteroPlan, cpu: TvmExecutable, gpu_plan: GpuPlan, rt: Runtime,
                 target_name: str, emulated: bool, build_seconds: float = 0.0) -> None:
        self.graph = graph
        self.plan = plan
        self.cpu = cpu
        self.gpu_plan = gpu_plan
        self.rt = rt
        self.target_name = target_name
        self.emulated = emulated
        self.build_seconds = build_seconds
        self.artifact_extras: dict[str, Any] = {}
        prg = rt.program(gpu_plan.source, where="OpenCL program") if gpu_plan.source else None
        kernels: dict[str, Any] = {}
        self._gpu = {s.node: bind_step(rt, s, prg, kernels) for s in gpu_plan.steps}
        self._cpu = {s.node: (s, k) for s, k in cpu._steps}
        missing = [n.name for n in graph.nodes if n.op != "const" and n not in self._gpu and n not in self._cpu]
        if missing:
            raise LpdcTargetError(f"nodes with neither a CPU nor a GPU step: {missing[:5]}")
        self._sequence = self._schedule()
        self._last = _last_use(self._sequence, set(graph.outputs))

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def output_names(self) -> list[str]:
        return [v.name for v in self.graph.outputs]

    @property
    def fallbacks(self) -> dict[str, str]:
        return {**self.cpu.fallbacks, **self.gpu_plan.fallbacks}

    def run(self, inputs: Mapping[str, np.ndarray], emulate: bool = False) -> dict[str, np.ndarray]:
        """Run the plan; a board target's plan runs here only as an emulation (`emulate=True`)."""
        if self.emulated and not emulate:
            raise LpdcTargetError(f"this plan is for {self.target_name!r}, whose CPU side is not this host: save it "
                                  "and run the artifact on the board, or pass emulate=True to run the same plan "
                                  "here (CPU side built for this host, GPU kernels on the local OpenCL device)",
                                  where=self.target_name)
        return self._execute(inputs, None)

    def profile(self, inputs: Mapping[str, np.ndarray], repeats: int = 1) -> tuple[dict[str, np.ndarray],
                                                                                   list[NodeTiming]]:
        """Wall time of each step as the host saw it (GPU steps: the enqueue, not the kernel)."""
        runs = []
        for _ in range(max(1, repeats)):
            times: list[NodeTiming] = []
            runs.append((self._execute(inputs, times), times))
        med = np.median(np.array([[t.seconds for t in r[1]] for r in runs]), axis=0)
        first = runs[0][1]
        return runs[-1][0], [NodeTiming(t.name, t.op, float(s), t.primitive) for t, s in zip(first, med, strict=True)]

    # ---- the static schedule -------------------------------------------------------------------
    def _schedule(self) -> list[tuple[str, Any]]:
        """("gpu"|"cpu", node) in an order that enqueues GPU work before the CPU's next layer."""
        pending = [n for n in self.graph.nodes if n.op != "const"]
        side = {n: ("gpu" if n in self._gpu and n.attrs.get("device") == "gpu" else "cpu") for n in pending}
        for n in pending:
            if side[n] == "cpu" and n not in self._cpu:
                side[n] = "gpu"
        issued: set[Any] = set()
        order: list[tuple[str, Any]] = []
        producers = {v: n for n in pending for v in n.outputs}

        def ready(n: Any) -> bool:
            return all(producers.get(v) is None or producers[v] in issued for v in n.inputs if v is not None)

        while pending:
            for n in [n for n in pending if side[n] == "gpu"]:
                if ready(n):
                    order.append(("gpu", n))
                    issued.add(n)
                    pending.remove(n)
            for n in pending:
                if side[n] == "cpu" and ready(n):
                    order.append(("cpu", n))
                    issued.add(n)
                    pending.remove(n)
                    break
            else:
                if pending and not any(ready(n) for n in pending):
                    raise LpdcTargetError("co-execution schedule is stuck (the graph is not topologically ordered)")
        return order

    # ---- running -------------------------------------------------------------------------------
    def _execute(self, inputs: Mapping[str, np.ndarray], times: list[NodeTiming] | None) -> dict[str, np.ndarray]:
        env: dict[tuple[Value, bool], np.ndarray] = {}
        for v, a in self.cpu._ref._bind_inputs(inputs).items():
            env[(v, False)] = a
        on_gpu: dict[Value, tuple[Any, np.ndarray, Any]] = {}  # value -> (buffer, host memory, event)
        wrapped: dict[Value, Any] = {}
        retired: list[Any] = []  # host memory a queued kernel may still read: freed after finish()
        for i, (where, node) in enumerate(self._sequence):
            t0 = time.perf_counter()
            try:
                if where == "gpu":
                    self._enqueue(node, env, on_gpu, wrapped)
                else:
                    for v in node.inputs:
                        if v in on_gpu:
                            self._sync(v, env, on_gpu)
                    s, kernel = self._cpu[node]
                    if s.func is None:
                        self.cpu._run_fallback(s, kernel, env)
                    else:
                        self.cpu._run_tvm(s, env)
            except LpdcExecutionError:
                raise
            except Exception as e:  # noqa: BLE001 - a runtime failure: name the node
                raise LpdcExecutionError(f"{type(e).__name__}: {e}", where=f"node '{node.name}' ({node.op})") from e
            if times is not None:
                times.append(NodeTiming(node.name, node.op, time.perf_counter() - t0, where))
            for v in self._last[i]:
                retired.extend((env.pop((v, False), None), env.pop((v, True), None), wrapped.pop(v, None),
                                on_gpu.pop(v, None)))
        for v in self.graph.outputs:
            if v in on_gpu:
                self._sync(v, env, on_gpu)
        self.rt.finish()
        retired.clear()
        return {v.name: self.cpu._get(v, False, env) for v in self.graph.outputs}

    def _enqueue(self, node: Any, env: dict, on_gpu: dict, wrapped: dict) -> None:
        s, k, consts = self._gpu[node]

        def buffer_of(v: Value) -> Any:
            if v in on_gpu:
                return on_gpu[v][0]
            buf = wrapped.get(v)
            if buf is None:
                host = self.cpu._get(v, True, env)
                buf = wrapped[v] = self.rt.wrap(host)
            return buf

        out_v = node.output
        host = aligned_empty(nhwc_shape(out_v))
        out = self.rt.wrap(host)
        ev = self.rt.run(k, kernel_buffers(s, consts, out, buffer_of))
        on_gpu[out_v] = (out, host, ev)

    def _sync(self, v: Value, env: dict, on_gpu: dict) -> None:
        """Make a GPU result visible to the host (map/unmap: no copy on shared memory)."""
        buf, host, ev = on_gpu[v]
        cl = self.rt.cl
        mapped, _ = cl.enqueue_map_buffer(self.rt.queue, buf, cl.map_flags.READ, 0, host.shape, np.float32,
                                          wait_for=[ev], is_blocking=True)
        if mapped.ctypes.data != host.ctypes.data:  # a driver that does not map in place
            host[...] = mapped
        mapped.base.release()
        env[(v, is_act4(v))] = host
        del on_gpu[v]


def _last_use(sequence: list[tuple[str, Any]], keep: set[Value]) -> list[list[Value]]:
    last: dict[Value, int] = {}
    for i, (_, n) in enumerate(sequence):
        for v in n.inputs:
            if v is not None:
                last[v] = i
    dead: list[list[Value]] = [[] for _ in sequence]
    for v, i in last.items():
        if v not in keep:
            dead[i].append(v)
    return dead
