"""The OpenCL backend's Executable: the whole graph on one OpenCL device.

Activations stay in device buffers between kernels (4-D ones NHWC, as on the TVM side); weights
are uploaded once. A node without a kernel runs on the host through the NumPy reference kernel:
its inputs come back to the host (NCHW) and its output goes up again. Per-node times in
`profile()` are the device's own event timestamps (host fallbacks are wall time).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...errors import LpdcError, LpdcExecutionError
from ...ir import Graph, Value
from ..numpy.executable import Executable as NumpyExecutable
from ..numpy.executable import NodeTiming
from ..numpy.kernels import get_kernel
from ..run_support import GraphIO, last_uses, median_profile
from ..tvm.lower import is_act4, nhwc_shape
from .build import GpuPlan, GpuStep
from .runtime import Kernel, Runtime, get_runtime


def to_device_layout(v: Value, a: np.ndarray) -> np.ndarray:
    """NCHW host array -> the device's storage (NHWC for 4-D activations)."""
    a = np.asarray(a, np.float32)
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1) if is_act4(v) else a)


def from_device_layout(v: Value, a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 3, 1, 2)) if is_act4(v) else a


class OpenCLExecutable(GraphIO):
    """A graph built by the OpenCL backend: `run({name: array}) -> {name: array}`, `.profile`."""

    def __init__(self, graph: Graph, plan: GpuPlan, runtime: Runtime | None = None,
                 build_seconds: float = 0.0) -> None:
        self.graph = graph
        self.plan = plan
        self.rt = runtime or get_runtime()
        self.build_seconds = build_seconds
        self.target_name = "opencl"
        self._ref = NumpyExecutable(graph)
        t0 = time.perf_counter()
        prg = self.rt.program(plan.source, where="OpenCL program") if plan.source else None
        self._kernels: dict[str, Any] = {}  # one kernel object per name (retrieval is costly)
        self._bound = [self._bind(s, prg) for s in plan.steps]
        self.build_seconds += time.perf_counter() - t0
        self._last_use = last_uses([s.node for s in plan.steps], set(graph.outputs))

    @property
    def fallbacks(self) -> dict[str, str]:
        return self.plan.fallbacks

    @property
    def device(self) -> str:
        return self.rt.description

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._execute(inputs, None)

    def profile(self, inputs: Mapping[str, np.ndarray],
                repeats: int = 1) -> tuple[dict[str, np.ndarray], list[NodeTiming]]:
        return median_profile(lambda times: self._execute(inputs, times), repeats)

    # ---- internals --------------------------------------------------------------------------
    def _bind(self, s: GpuStep, prg: Any) -> tuple[GpuStep, Any, list[Any]]:
        return bind_step(self.rt, s, prg, self._kernels)

    def _execute(self, inputs: Mapping[str, np.ndarray], times: list[NodeTiming] | None) -> dict[str, np.ndarray]:
        bound = self._ref._bind_inputs(inputs)
        dev: dict[Value, Any] = {v: self.rt.upload(to_device_layout(v, a)) for v, a in bound.items()}
        host: dict[Value, np.ndarray] = dict(bound)  # NCHW host copies (inputs, fallback results)
        events: list[tuple[int, Any]] = []
        for i, (s, k, consts) in enumerate(self._bound):
            t0 = time.perf_counter()
            try:
                if isinstance(k, Kernel):
                    ev = self._launch(s, k, consts, dev, host)
                    events.append((i, ev))
                else:
                    self._fallback(s, k, dev, host)
            except LpdcError:
                raise
            except Exception as e:  # noqa: BLE001 - a driver failure: name the node
                raise LpdcExecutionError(f"{type(e).__name__}: {e}", where=f"node '{s.node.name}' ({s.node.op})") from e
            if times is not None:
                kind = "opencl" if isinstance(k, Kernel) else "numpy"
                times.append(NodeTiming(s.node.name, s.node.op, time.perf_counter() - t0, kind))
            for v in self._last_use[i]:
                dev.pop(v, None)
                host.pop(v, None)
        outs = {v.name: self._host(v, dev, host) for v in self.graph.outputs}
        self.rt.finish()
        if times is not None:
            for i, ev in events:
                times[i] = NodeTiming(times[i].name, times[i].op, (ev.profile.end - ev.profile.start) * 1e-9,
                                      times[i].primitive)
        return outs

    def _buffer(self, v: Value, dev: dict, host: dict) -> Any:
        buf = dev.get(v)
        if buf is None:
            data = host.get(v)
            if data is None:
                data = self.graph.const_data(v)
                if data is None:
                    raise LpdcExecutionError(f"value %{v.name} was not computed", where=f"value '{v.name}'")
            buf = dev[v] = self.rt.upload(to_device_layout(v, data))
        return buf

    def _host(self, v: Value, dev: dict, host: dict) -> np.ndarray:
        got = host.get(v)
        if got is None:
            stored = self.rt.download(self._buffer(v, dev, host), nhwc_shape(v))
            got = host[v] = from_device_layout(v, stored)
        return got

    def _launch(self, s: GpuStep, k: Kernel, consts: list[Any], dev: dict, host: dict) -> Any:
        out_v = s.node.output
        out = self.rt.empty(int(np.prod(nhwc_shape(out_v))) * 4)
        bufs = kernel_buffers(s, consts, out, lambda v: self._buffer(v, dev, host))
        ev = self.rt.run(k, bufs)
        dev[out_v] = out
        host.pop(out_v, None)
        return ev

    def _fallback(self, s: GpuStep, kernel: Any, dev: dict, host: dict) -> None:
        args = [None if v is None else self._host(v, dev, host) for v in s.node.inputs]
        results = self._ref._call(s.node, kernel, args)
        for v, r in zip(s.node.outputs, results, strict=True):
            host[v] = r
            dev.pop(v, None)


def bind_step(rt: Runtime, s: GpuStep, prg: Any, kernels: dict[str, Any]) -> tuple[GpuStep, Any, list[Any]]:
    """(step, Kernel or NumPy reference kernel, constant buffers by argument position)."""
    if s.handwritten is not None:
        h = s.handwritten
        k = rt.kernel(h.source, h.name, h.global_size, h.local_size, where=f"node '{s.node.name}'")
        return s, k, [rt.upload(c) for c in h.consts]
    if s.kernel is None:
        return s, get_kernel(s.node.op), []
    assert prg is not None and s.spec is not None
    fn = kernels.get(s.kernel)
    if fn is None:
        fn = kernels[s.kernel] = rt.cl.Kernel(prg, f"{s.kernel}_kernel")
    k = Kernel(s.kernel, fn, (s.spec.global_size,), (s.spec.local,))
    consts = [None if isinstance(a, Value) else rt.upload(a) for a in s.args]
    return s, k, consts


def kernel_buffers(s: GpuStep, consts: list[Any], out: Any, buffer_of: Any) -> list[Any]:
    """The kernel's arguments in call order; `buffer_of(value)` supplies the data inputs."""
    if s.handwritten is not None:
        return [buffer_of(v) for v in s.handwritten.inputs] + consts + [out]
    by_pos = [consts[j] if consts[j] is not None else buffer_of(a) for j, a in enumerate(s.args)] + [out]
    return [by_pos[j] for j in s.arg_order]
