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
from ..run_support import GraphIO, last_uses, median_profile
from ..tvm.executable import TvmExecutable, aligned, aligned_empty
from ..tvm.lower import is_act4, nhwc_shape
from .plan import HeteroPlan


class HeteroExecutable(GraphIO):
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
        self._views = {n for n in self._cpu if _row_view(n, rt.align) is not None}
        self._arena: dict[Value, np.ndarray] = {}
        self._wraps: dict[tuple[int, int], Any] = {}
        self._wrap_keep: dict[tuple[int, int], np.ndarray] = {}
        self._arena_roots: set[int] = set()
        self._placed = self._placements()
        self._sequence = self._schedule()
        self._last = last_uses([n for _, n in self._sequence], set(graph.outputs))

    def save(self, path: Any, meta: dict[str, Any] | None = None) -> Any:
        """Write the board's artifact directory (see artifact.py)."""
        from .artifact import save_hetero_artifact

        return save_hetero_artifact(self, path, meta)

    def explain(self) -> str:
        return self.plan.explain()

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
        if not any(where == "gpu" for where, _ in self._sequence):
            return self.cpu.run(inputs)  # an all-CPU plan: the TVM executable's own loop, no overhead
        return self._execute(inputs, None)

    def profile(self, inputs: Mapping[str, np.ndarray],
                repeats: int = 1) -> tuple[dict[str, np.ndarray], list[NodeTiming]]:
        """Wall time of each step as the host saw it (GPU steps: the enqueue, not the kernel)."""
        return median_profile(lambda times: self._execute(inputs, times), repeats)

    # ---- zero-copy row splits -----------------------------------------------------------------
    def _placements(self) -> dict[Value, tuple[Value, int]]:
        """Values computed straight into rows of a concat's output: value -> (concat output, row).

        A concat along rows (NHWC axis 1) of a batch-1 activation is one buffer of row slabs; when
        each input is made only for it, by a TVM or GPU kernel, and every slab starts on 64 bytes,
        the producers write their slabs in place and the concat costs nothing.
        """
        placed: dict[Value, tuple[Value, int]] = {}
        for n in self.graph.nodes:
            if n.op != "concat" or n not in self._cpu or not is_act4(n.output) or n.output.type.shape[0] != 1:
                continue
            if n.attrs["axis"] % 4 != 2:
                continue
            _, k, _, w = n.output.type.shape
            row, ok, slabs = 0, True, []
            floats = self.rt.align // 4
            for v in n.inputs:
                p = v.producer if v is not None else None
                tvm_made = p in self._cpu and self._cpu[p][0].func is not None
                gpu_made = p in self._gpu and p.attrs.get("device") == "gpu"
                if (p is None or p.op == "const" or len(v.users) != 1 or v in self.graph.outputs
                        or not (tvm_made or gpu_made) or (row * w * k) % floats or p in self._views):
                    ok = False
                    break
                slabs.append((v, row))
                row += int(v.type.shape[2])
            if ok:
                placed.update({v: (n.output, r) for v, r in slabs})
        return placed

    def _out_array(self, v: Value, env: dict) -> np.ndarray:
        """Where a kernel writes `v`: its slab of a concat's buffer, or its own aligned memory.

        Each value keeps its memory from run to run (the order of work is fixed), so no run pays
        for fresh pages or new OpenCL buffers; outputs are copied out before they are returned.
        """
        place = self._placed.get(v)
        if place is None:
            return self._memory(v)
        whole, row = place
        buf = env.get((whole, True))
        if buf is None:
            buf = env[(whole, True)] = self._memory(whole)
        return buf[:, row:row + int(v.type.shape[2])]

    def _memory(self, v: Value) -> np.ndarray:
        a = self._arena.get(v)
        if a is None:
            a = self._arena[v] = aligned_empty(nhwc_shape(v), align=self.rt.align)
            root = a
            while isinstance(root.base, np.ndarray):
                root = root.base
            self._arena_roots.add(id(root))
        return a

    def _wrap(self, a: np.ndarray) -> Any:
        """An OpenCL buffer over host memory: made once for arena memory (or views of it)."""
        root = a
        while isinstance(root.base, np.ndarray):
            root = root.base
        if id(root) not in self._arena_roots:
            return self.rt.wrap(a)
        key = (a.ctypes.data, a.nbytes)
        buf = self._wraps.get(key)
        if buf is None:
            buf = self._wraps[key] = self.rt.wrap(a)
            self._wrap_keep[key] = a
        return buf

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

        def feeds_gpu(n: Any) -> bool:
            return any(side.get(u) == "gpu" for v in n.outputs for u in v.users)

        def ready(n: Any) -> bool:
            return all(producers.get(v) is None or producers[v] in issued for v in n.inputs if v is not None)

        while pending:
            for n in [n for n in pending if side[n] == "gpu"]:
                if ready(n):
                    order.append(("gpu", n))
                    issued.add(n)
                    pending.remove(n)
            cands = [n for n in pending if side[n] == "cpu" and ready(n)]
            if cands:  # first what lets the GPU start (its inputs' views), then graph order
                n = next((c for c in cands if feeds_gpu(c)), cands[0])
                order.append(("cpu", n))
                issued.add(n)
                pending.remove(n)
            elif pending and not any(ready(n) for n in pending):
                raise LpdcTargetError("co-execution schedule is stuck (the graph is not topologically ordered)")
        return order

    # ---- running -------------------------------------------------------------------------------
    def split_times(self, inputs: Mapping[str, np.ndarray], repeats: int = 3) -> dict[str, tuple[float, float]]:
        """For each split layer: (CPU half wall time, GPU half kernel time), medians, in seconds,
        measured while both run together (what the split ratio must balance)."""
        cpu_t: dict[str, list[float]] = {}
        gpu_t: dict[str, list[float]] = {}
        for _ in range(max(1, repeats)):
            times: list[NodeTiming] = []
            events: dict[str, Any] = {}
            self._execute(inputs, times, events)
            for t in times:
                cpu_t.setdefault(t.name, []).append(t.seconds)
            for name, ev in events.items():
                gpu_t.setdefault(name, []).append((ev.profile.end - ev.profile.start) * 1e-9)
        out = {}
        for layer, c in self.plan.layers.items():
            a, b = f"{layer}@cpu", f"{layer}@gpu"
            if c.device == "split" and a in cpu_t and b in gpu_t:
                out[layer] = (float(np.median(cpu_t[a])), float(np.median(gpu_t[b])))
        return out

    def _execute(self, inputs: Mapping[str, np.ndarray], times: list[NodeTiming] | None,
                 events: dict[str, Any] | None = None) -> dict[str, np.ndarray]:
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
                    ev = self._enqueue(node, env, on_gpu, wrapped)
                    if events is not None:
                        events[node.name] = ev
                else:
                    for v in node.inputs:
                        if v in on_gpu:
                            self._sync(v, env, on_gpu, wrapped)
                    self._run_cpu(node, env)
            except LpdcExecutionError:
                raise
            except Exception as e:  # noqa: BLE001 - a runtime failure: name the node
                raise LpdcExecutionError(f"{type(e).__name__}: {e}", where=f"node '{node.name}' ({node.op})") from e
            if times is not None:
                times.append(NodeTiming(node.name, node.op, time.perf_counter() - t0, where))
            for v in self._last[i]:
                arrays = (env.pop((v, False), None), env.pop((v, True), None))
                if v in wrapped or v in on_gpu:  # a queued kernel may still read it: keep until finish()
                    retired.extend((*arrays, wrapped.pop(v, None), on_gpu.pop(v, None)))
        for v in self.graph.outputs:
            if v in on_gpu:
                self._sync(v, env, on_gpu, wrapped)
        self.rt.finish()
        retired.clear()
        return {v.name: np.array(self.cpu._get(v, False, env)) for v in self.graph.outputs}

    def _run_cpu(self, node: Any, env: dict) -> None:
        out_v = node.output
        if node in self._views:  # a batch-1 row slice: a view of its input's rows
            a, b = _row_view(node, self.rt.align)
            env[(out_v, True)] = self.cpu._get(node.inputs[0], True, env)[:, a:b]
            return
        if node.op == "concat" and all(v in self._placed for v in node.inputs):
            return  # its inputs were computed in place; _out_array made the buffer
        s, kernel = self._cpu[node]
        if s.func is None:
            self.cpu._run_fallback(s, kernel, env)
            return
        args = [aligned(self.cpu._get(a, s.reads_nhwc(i), env)) if isinstance(a, Value) else a
                for i, a in enumerate(s.args)]
        out = self._out_array(out_v, env)
        self.cpu._func(s.func)(*args, out)
        env[(out_v, is_act4(out_v))] = out

    def _enqueue(self, node: Any, env: dict, on_gpu: dict, wrapped: dict) -> Any:
        s, k, consts = self._gpu[node]

        def buffer_of(v: Value) -> Any:
            if v in on_gpu:
                return on_gpu[v][0]
            buf = wrapped.get(v)
            if buf is None:
                host = self.cpu._get(v, True, env)
                if host.ctypes.data % self.rt.align or not host.flags.c_contiguous:
                    host = env[(v, is_act4(v))] = _copy_aligned(host, self.rt.align)
                    buf = wrapped[v] = self.rt.wrap(host)
                else:
                    buf = wrapped[v] = self._wrap(host)
            return buf

        out_v = node.output
        host = self._out_array(out_v, env)
        out = self._wrap(host)
        ev = self.rt.run(k, kernel_buffers(s, consts, out, buffer_of))
        on_gpu[out_v] = (out, host, ev)
        return ev

    def _sync(self, v: Value, env: dict, on_gpu: dict, wrapped: dict) -> None:
        """Make a GPU result visible to the host (map/unmap: no copy on shared memory). Its buffer
        moves to `wrapped`: a GPU kernel queued earlier may still read it, so `_execute` must keep
        the buffer and its host memory until finish(), not free them at the value's last use."""
        buf, host, ev = on_gpu[v]
        wrapped[v] = buf
        cl = self.rt.cl
        if self.rt.is_cpu and host.ctypes.data % self.rt.align == 0:  # it wrote host memory itself
            ev.wait()
            env[(v, is_act4(v))] = host
            del on_gpu[v]
            return
        mapped, _ = cl.enqueue_map_buffer(self.rt.queue, buf, cl.map_flags.READ, 0, host.shape, np.float32,
                                          wait_for=[ev], is_blocking=True)
        if mapped.ctypes.data != host.ctypes.data:  # a driver that does not map in place
            host[...] = mapped
        mapped.base.release()
        env[(v, is_act4(v))] = host
        del on_gpu[v]


def _copy_aligned(a: np.ndarray, align: int) -> np.ndarray:
    out = aligned_empty(a.shape, a.dtype, align)
    out[...] = a
    return out


def _row_view(n: Any, align: int) -> tuple[int, int] | None:
    """(first, end) row when `n` slices only rows (step 1) of a batch-1 activation and the view
    starts on `align` bytes (what the OpenCL device needs of host memory)."""
    if n.op != "slice" or not is_act4(n.inputs[0]) or not is_act4(n.output) or n.output.type.shape[0] != 1:
        return None
    a = n.attrs
    axes = [ax % 4 for ax in (a["axes"] or range(len(a["starts"])))]
    if axes != [2] or (a["steps"] or [1]) != [1]:
        return None
    from ...ir.ops.tensor import slice_bounds

    _, c, h, w = n.inputs[0].type.shape
    r = slice_bounds(h, a["starts"][0], a["ends"][0], 1)
    if not len(r) or (r.start * w * c * 4) % align:
        return None
    return r.start, r.stop
