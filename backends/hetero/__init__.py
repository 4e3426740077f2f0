"""Heterogeneous targets: a CPU side (TVM) and a GPU side (OpenCL) sharing the layers of one graph.

`compile_hetero(graph, "mali+a72")` finds which layers have GPU kernels, prices every layer on
both sides (the analytical model for a board; measured profiles for devices that are on this
host, e.g. "x86+opencl"), solves the device/split PBQP (plan.py), rewrites split layers into
halves (split.py), and builds both sides. For a board target the CPU side is built for this
host as well, so `exe.run(inputs, emulate=True)` runs the very same plan and OpenCL sources
here; `exe.save(DIR)` writes the board's artifact (AArch64 library, OpenCL sources, plan.json).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np

from ...errors import LpdcTargetError
from ...ir import Graph, random_inputs
from ..target import Device, Target

log = logging.getLogger(__name__)

# A measured co-execution plan is kept only if it runs below this fraction of the best single
# device's latency (medians; the margin keeps timing noise from choosing a slower plan).
KEEP_SPLIT_BELOW = 0.97


def sides(tgt: Target) -> tuple[Device, Device]:
    """(CPU side, GPU side) of a heterogeneous target; several CPU clusters act as one."""
    gpus = [d for d in tgt.devices if d.backend == "opencl"]
    cpus = [d for d in tgt.devices if d.kind == "cpu" and d.backend == "tvm"]
    if len(gpus) != 1 or not cpus or len(gpus) + len(cpus) != len(tgt.devices):
        raise LpdcTargetError(f"a co-execution target needs one OpenCL device and TVM CPU devices, not {tgt.name!r}",
                              where=tgt.name)
    if len(cpus) == 1:
        return cpus[0], gpus[0]
    name = "+".join(d.name for d in cpus)
    return Device(name, "cpu", "tvm", sum(d.peak_gflops for d in cpus), max(d.bandwidth_gbs for d in cpus),
                  sum(d.cores for d in cpus), cpus[-1].isa, "CPU clusters together"), gpus[0]


def measure_times(graph: Graph, gpu_full: Any, rt: Any, repeats: int = 3) -> Any:
    """Profile the whole graph on each side alone (in this process's thread setup)."""
    from ..opencl.executable import OpenCLExecutable
    from ..tvm import compile_tvm
    from .costs import measured_times

    gpu_ok = _gpu_ok(gpu_full)
    launch_s, sync_s, enqueue_s = _round_trips(rt)
    inputs = random_inputs(graph)
    cpu_exe = compile_tvm(graph, "x86", fuse_depthwise=False)  # a time per layer: the plan places layers
    cpu_exe.run(inputs)
    _, tc = cpu_exe.profile(inputs, repeats)
    gpu_exe = OpenCLExecutable(graph, gpu_full, rt)
    gpu_exe.run(inputs)
    _, tg = gpu_exe.profile(inputs, repeats)
    times = measured_times(tc, tg, gpu_ok, launch_s, sync_s, node_s=enqueue_s)
    times.whole = {"cpu": latency(cpu_exe, inputs, repeats)}
    if not gpu_exe.fallbacks:
        times.whole["gpu"] = latency(gpu_exe, inputs, repeats)
    return times


def latency(exe: Any, inputs: dict[str, np.ndarray], repeats: int = 3) -> float:
    """Median wall time of `exe.run(inputs)`, seconds."""
    samples = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        exe.run(inputs)
        samples.append(time.perf_counter() - t0)
    return float(np.median(samples))


def single_device(plan: Any, device: str) -> None:
    """Turn `plan` into every layer on one side (the fallback when co-execution does not pay)."""
    for c in plan.layers.values():
        c.device = device if device == "cpu" or np.isfinite(c.t_gpu) else "cpu"
        c.cpu_share = 1.0 if c.device == "cpu" else 0.0
        c.t_chosen = c.t_cpu if c.device == "cpu" else c.t_gpu


def rebalance(plan: Any, halves: dict[str, tuple[float, float]]) -> bool:
    """Move each split point so the halves' measured rates finish together; True if any moved."""
    from .plan import _cpu_channels

    moved = False
    for name, (tc, tg) in halves.items():
        c = plan.layers[name]
        total = c.rows if c.split_axis == "rows" else c.channels
        mine = c.cpu_rows if c.split_axis == "rows" else c.cpu_channels
        if tc <= 0 or tg <= 0 or not 0 < mine < total:
            continue
        cpu_rate, gpu_rate = mine / tc, (total - mine) / tg
        share = cpu_rate / (cpu_rate + gpu_rate)
        if c.split_axis == "rows":
            new = min(max(int(round(share * total)), 1), total - 1)
            c.cpu_rows = new
        else:
            new = _cpu_channels(total, share)
            c.cpu_channels = new
        c.cpu_share = new / total
        moved |= new != mine
    return moved


def _round_trips(rt: Any, n: int = 30) -> tuple[float, float, float]:
    """(launch + wait of an empty kernel, making a kernel's output visible to the host, the host's
    own time to enqueue a kernel), medians in seconds; the second is a map + unmap, or nothing but
    the wait on a CPU device (see HeteroExecutable._sync)."""
    src = "__kernel void lpdc_nop(__global float* a) { if (get_global_id(0) == 0) a[0] += 1.0f; }"
    from ..tvm.executable import aligned_empty

    k = rt.kernel(src, "lpdc_nop", (16,), None)
    host = aligned_empty((1 << 16,), np.float32, rt.align)
    host[:] = 0
    buf = rt.wrap(host)
    launch, sync, enqueue = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        ev = rt.run(k, [buf])
        enqueue.append(time.perf_counter() - t0)
        ev.wait()
        t1 = time.perf_counter()
        if not rt.is_cpu:
            mapped, _ = rt.cl.enqueue_map_buffer(rt.queue, buf, rt.cl.map_flags.READ, 0, host.shape, np.float32,
                                                 is_blocking=True)
            mapped.base.release()
            rt.finish()
        launch.append(t1 - t0)
        sync.append(time.perf_counter() - t1)
    return float(np.median(launch)), float(np.median(sync)), float(np.median(enqueue))


def _gpu_ok(gpu_plan: Any) -> set[str]:
    return {s.node.name for s in gpu_plan.steps if s.kernel is not None or s.handwritten is not None}


def compile_hetero(graph: Graph, target: str | Target = "mali+a72", costs: str | None = None,
                   repeats: int = 3, plan: Any = None, refine: bool = True, fallback: bool = True,
                   **options: Any):
    """Plan and build `graph` (already optimised) for a CPU + GPU target.

    costs: "model" (analytical), "measure" (profile both sides here), or a costs.LayerTimes of
    per-layer seconds measured elsewhere (e.g. on the board; they override the model layer by
    layer); default: measure when every device of the target is on this host, else the model. `plan`: a
    HeteroPlan to use as it is (from an artifact). `refine`: with measured costs, time the split
    layers' halves running together once and move each split point to balance them (a layer's
    small slice runs at a different rate than the whole layer did alone). `fallback`: with
    measured costs, keep the plan only if it beats each device alone, measured end to end.
    """
    from ..opencl.build import plan_gpu
    from ..opencl.runtime import get_runtime
    from .costs import LayerTimes, model_times
    from .plan import plan_devices
    from .split import apply_plan

    tgt = Target(target)
    cpu_dev, gpu_dev = sides(tgt)
    on_host = cpu_dev.name == "x86" and gpu_dev.name == "opencl"
    rt = get_runtime()
    t0 = time.perf_counter()
    plan_given, times = plan, None
    if plan is None:
        gpu_full = plan_gpu(graph, device=gpu_dev.name)
        mode = costs or ("measure" if on_host else "model")
        if isinstance(mode, LayerTimes):  # times measured elsewhere, e.g. on the board
            times = model_times(graph, cpu_dev, gpu_dev, _gpu_ok(gpu_full))
            times.cpu.update(mode.cpu)
            times.gpu.update({k: v for k, v in mode.gpu.items() if k in times.gpu})
            times.source, times.launch_s, times.sync_s = "measured", mode.launch_s, mode.sync_s
        elif mode == "measure":
            times = measure_times(graph, gpu_full, rt, repeats)
        elif mode == "model":
            times = model_times(graph, cpu_dev, gpu_dev, _gpu_ok(gpu_full))
        else:
            raise LpdcTargetError(f"costs must be 'model' or 'measure', not {costs!r}")
        plan = plan_devices(graph, times, tgt.name, cpu_dev, gpu_dev)
    exe = build_annotated(apply_plan(graph, plan), plan, tgt, rt, emulated=not on_host)
    whole = getattr(times, "whole", None) if plan_given is None else None
    if whole and on_host:
        inputs = random_inputs(graph)
        if refine and any(c.device == "split" for c in plan.layers.values()):
            if rebalance(plan, exe.split_times(inputs, repeats)):
                exe = build_annotated(apply_plan(graph, plan), plan, tgt, rt, emulated=False)
        best = min(whole, key=whole.get)
        # never slower than one device alone: keep the split only when it clearly wins end to end
        if fallback and latency(exe, inputs, max(repeats, 5)) > KEEP_SPLIT_BELOW * whole[best]:
            log.info("co-execution is slower than the %s alone here: running everything there", best)
            single_device(plan, best)
            plan.predicted_s = whole[best]
            exe = build_annotated(apply_plan(graph, plan), plan, tgt, rt, emulated=False)
    exe.build_seconds = time.perf_counter() - t0
    log.info("co-execution plan for %s: %s", tgt.name, {d: sum(c.device == d for c in plan.layers.values())
                                                        for d in ("cpu", "gpu", "split")})
    return exe


def build_annotated(g: Graph, plan: Any, tgt: Target, rt: Any, emulated: bool, cpu_lib: Any = None,
                    cpu_device: str = "x86"):
    """Build both sides of a graph whose nodes carry `device` (what apply_plan returns).

    The CPU side is built for this host (x86), unless `cpu_lib` (a loaded TVM library for the
    CPU nodes of `cpu_device`, e.g. an artifact's AArch64 library on its board) is given.
    """
    from ..opencl.build import plan_gpu
    from ..tvm.build import build_module, plan_graph
    from ..tvm.executable import TvmExecutable
    from ..tvm.target import tvm_target
    from .executable import HeteroExecutable

    gpu_names = {n.name for n in g.nodes if n.attrs.get("device") == "gpu"}
    gpu_plan = plan_gpu(g, only=gpu_names, device=plan.gpu)
    for name in gpu_plan.fallbacks:  # no GPU kernel after all: the CPU takes it
        next(n for n in g.nodes if n.name == name).attrs["device"] = "cpu"
    if gpu_plan.fallbacks:
        gpu_names -= set(gpu_plan.fallbacks)
        gpu_plan = plan_gpu(g, only=gpu_names, device=plan.gpu)
    cpu_names = {n.name for n in g.nodes if n.op != "const" and n.name not in gpu_names}
    tt = tvm_target(cpu_device)
    cpu_plan = plan_graph(g, tt, only=cpu_names)
    lib = cpu_lib if cpu_lib is not None else build_module(cpu_plan, tt)
    cpu_exe = TvmExecutable(g, cpu_plan, lib, cpu_device, True)
    cpu_exe.tvm_target = tt
    return HeteroExecutable(g, plan, cpu_exe, gpu_plan, rt, tgt.name, emulated=emulated)
