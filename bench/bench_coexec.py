"""Real CPU + GPU co-execution on this host: TVM on one core, the OpenCL device on the other.

For each model: latency of the CPU side alone (TVM x86, 1 thread), the OpenCL device alone
(PoCL, 1 worker thread), and the co-execution plan (target "x86+opencl", costs measured in this
same confinement), then the split's throughput as a fraction of the ideal (the sum of the two
devices' throughputs) and its speed-up over the best single device. Rounds are interleaved so
the three runs see the same machine load; medians are reported.

    python bench/bench_coexec.py [--models resnet18 vgg16 mobilenet_v2] [--rounds 7] [--json out.json]

Confinement: PoCL reads POCL_MAX_PTHREAD_COUNT when the platform starts and its worker threads
inherit the CPU affinity of the thread that starts it, so the main thread first pins itself to
the OpenCL core, starts the runtime, then pins itself to the CPU core for TVM (TVM_NUM_THREADS=1
runs kernels on the calling thread). The affinity of every thread is checked and printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("POCL_MAX_PTHREAD_COUNT", "1")
os.environ.setdefault("TVM_NUM_THREADS", "1")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import numpy as np  # noqa: E402


def thread_affinities() -> dict[str, str]:
    """Thread id -> allowed CPUs, read from /proc (Linux)."""
    out = {}
    for task in sorted(Path("/proc/self/task").iterdir()):
        try:
            status = (task / "status").read_text()
        except OSError:
            continue
        name = (task / "comm").read_text().strip()
        lines = [ln for ln in status.splitlines() if ln.startswith("Cpus_allowed_list")]
        cpus = lines[0].split(":", 1)[1].strip() if lines else "?"
        out[f"{task.name} ({name})"] = cpus
    return out


def confine(cpu_core: int, gpu_core: int) -> None:
    from lpdc.backends.opencl.runtime import get_runtime

    os.sched_setaffinity(0, {gpu_core})
    rt = get_runtime()  # PoCL's workers start here and inherit this mask
    os.sched_setaffinity(0, {cpu_core})
    print(f"OpenCL device: {rt.description}")


def median_ms(fn, rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def bench_model(name: str, rounds: int, gpu_core: int) -> dict:
    from lpdc.backends.hetero import compile_hetero
    from lpdc.backends.numpy import compile_numpy
    from lpdc.backends.opencl import compile_opencl
    from lpdc.backends.tvm import compile_tvm
    from lpdc.ir import random_inputs
    from lpdc.passes.manager import PassManager, pipeline
    from lpdc.tools.zoo import build

    g = PassManager(pipeline(2)).run(build(name))
    x = random_inputs(g)
    ref = compile_numpy(g).run(x)
    cpu = compile_tvm(g, "x86")
    gpu = compile_opencl(g)
    t0 = time.perf_counter()
    het = compile_hetero(g, "x86+opencl", costs="measure", repeats=3)
    plan_s = time.perf_counter() - t0
    forced = compile_hetero(g, "x86+opencl", costs="measure", repeats=3, fallback=False)
    runs = {"cpu": lambda: cpu.run(x), "opencl": lambda: gpu.run(x), "chosen": lambda: het.run(x),
            "split": lambda: forced.run(x)}
    for fn in runs.values():  # warm up (and check numerics)
        out = fn()
        err = max(float(np.abs(out[k] - ref[k]).max() / max(1.0, float(np.abs(ref[k]).max()))) for k in ref)
        assert err < 1e-3, f"{name}: wrong result (relative error {err:.2e})"
    samples: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(rounds):
        for k, fn in runs.items():
            samples[k] += median_ms(fn, 1)
    med = {k: float(np.median(v)) for k, v in samples.items()}
    ideal = 1.0 / (1.0 / med["cpu"] + 1.0 / med["opencl"])

    def counts(exe) -> dict[str, int]:
        return {d: sum(c.device == d for c in exe.plan.layers.values()) for d in ("cpu", "gpu", "split")}

    busy = cpu_while_device_busy(cpu, gpu, x, rounds, gpu_core)
    return {"model": name, "cpu_ms": med["cpu"], "opencl_ms": med["opencl"], "split_ms": med["split"],
            "chosen_ms": med["chosen"], "ideal_ms": ideal, "fraction_of_ideal": ideal / med["split"],
            "chosen_fraction_of_ideal": ideal / med["chosen"],
            "speedup_vs_best_single": min(med["cpu"], med["opencl"]) / med["split"],
            "chosen_vs_best_single": min(med["cpu"], med["opencl"]) / med["chosen"],
            "cpu_ms_while_opencl_busy": busy, "split_plan": counts(forced), "chosen_plan": counts(het),
            "predicted_ms": forced.plan.predicted_s * 1e3, "plan_and_build_s": plan_s,
            "spread_ms": {k: [float(min(v)), float(max(v))] for k, v in samples.items()}}


def cpu_while_device_busy(cpu, gpu, x, rounds: int, gpu_core: int) -> float:
    """The CPU side's latency while a thread keeps the OpenCL device busy: how much the two
    cores slow each other (shared caches, memory bandwidth, power), which bounds any split."""
    import threading

    stop = threading.Event()

    def spin() -> None:
        os.sched_setaffinity(0, {gpu_core})  # this thread's enqueue work stays off the CPU side's core
        while not stop.is_set():
            gpu.run(x)

    t = threading.Thread(target=spin, daemon=True)
    t.start()
    time.sleep(0.2)
    ms = float(np.median(median_ms(lambda: cpu.run(x), rounds)))
    stop.set()
    t.join()
    return ms


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet18", "vgg16", "mobilenet_v2"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--cpu-core", type=int, default=0)
    ap.add_argument("--gpu-core", type=int, default=1)
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("needs two cores", file=sys.stderr)
        return 2
    confine(args.cpu_core, args.gpu_core)
    results = [bench_model(m, args.rounds, args.gpu_core) for m in args.models]
    print("threads (id name: allowed CPUs):", json.dumps(thread_affinities()))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"CPU side on core {args.cpu_core}, OpenCL on core {args.gpu_core}")
    print(f"{'model':<14}{'cpu ms':>9}{'ocl ms':>9}{'split ms':>10}{'ideal ms':>10}{'of ideal':>10}"
          f"{'vs best':>9}{'chosen ms':>11}{'cpu|busy':>10}  split plan / chosen plan")
    for r in results:
        print(f"{r['model']:<14}{r['cpu_ms']:9.2f}{r['opencl_ms']:9.2f}{r['split_ms']:10.2f}{r['ideal_ms']:10.2f}"
              f"{r['fraction_of_ideal']:10.1%}{r['speedup_vs_best_single']:9.2f}{r['chosen_ms']:11.2f}"
              f"{r['cpu_ms_while_opencl_busy']:10.2f}  {r['split_plan']} / {r['chosen_plan']}")
    print("split: the co-execution plan as solved; chosen: what compile picks (the split only if it beats each "
          "device alone); cpu|busy: the CPU side alone while the OpenCL device computes on the other core")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
