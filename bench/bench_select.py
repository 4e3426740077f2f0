"""End-to-end latency of primitive-selection plans on the NumPy backend, side by side.

For each zoo model: the PBQP plan (select-primitives), the greedy plan (each layer's fastest
primitive, ignoring conversions), the default O2 graph (reference im2col everywhere), and one
single-primitive plan per conv primitive that applies to some layer of the model (that primitive
wherever it applies, the reference im2col elsewhere; glue layouts still chosen by PBQP). All plans
share one measured cost cache, run in one process, interleaved round-robin so that load from
other processes hits every plan alike; each plan's latency is the median over the rounds.
Every plan's outputs are checked against the O0 reference.

    python3 bench/bench_select.py --models googlenet,resnet50 --repeats 7 [--threads 1]

Not part of the test suite: it measures (the first run of a model fills the cost cache, which
takes a while) and it runs whole 224x224 networks many times.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from dataclasses import dataclass

import lpdc
import numpy as np
from lpdc.backends.numpy import compile_numpy
from lpdc.backends.numpy.primitives import packed_bytes, primitives_for, set_pack_limit
from lpdc.ir import Graph
from lpdc.passes.manager import PassManager, pipeline
from lpdc.passes.select.choices import primitive_choices
from lpdc.passes.select.select_primitives import select, select_config

DEFAULT_MODELS = "tiny_cnn,lenet,squeezenet1_1,mobilenet_v1,resnet18,googlenet,resnet50"


@dataclass
class PlanRun:
    """One plan of one model: its executable and what selection reported."""

    name: str
    exe: object
    solve_ms: float = float("nan")
    conversions: int = 0
    optimal: bool | None = None
    predicted_ms: float = float("nan")
    times: list[float] | None = None  # CPU seconds of the process per run (wall with threaded BLAS)
    wall: list[float] | None = None


def _o2(graph: Graph) -> Graph:
    return PassManager(pipeline(2)).run(graph.copy())


def _planned(o2: Graph, name: str, **options) -> PlanRun:
    with select_config(**options) as config:
        graph, plan = select(o2.copy(), config)
    run = PlanRun(name, compile_numpy(graph))
    if plan is not None:
        run.solve_ms, run.conversions, run.optimal = plan.solve_seconds * 1e3, len(plan.conversions), plan.optimal
        run.predicted_ms = plan.cost * 1e3
    return run


def _single_primitives(o2: Graph) -> list[str]:
    """Conv primitives other than the reference that apply to at least one conv of the model."""
    used = set()
    for node in o2.nodes:
        if node.op == "conv":
            used |= {c.primitive for c, _ in primitive_choices(node, o2)}
    return [p.name for p in primitives_for("conv") if p.name in used]


def build_plans(model: str, cache: str | None, costs: str,
                skip: frozenset[str] = frozenset()) -> tuple[list[PlanRun], dict[str, np.ndarray], dict]:
    graph = lpdc.load(f"zoo:{model}")
    rng = np.random.default_rng(0)
    inputs = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in graph.inputs}
    reference = lpdc.compile(graph, opt_level=0).run(inputs)
    o2 = _o2(graph)
    common = {"cache_path": cache, "costs": costs}
    t0 = time.perf_counter()
    runs = [_planned(o2, "pbqp", **common)]
    measure_s = time.perf_counter() - t0
    runs.append(_planned(o2, "greedy", strategy="greedy", **common))
    runs.append(PlanRun("default (O2, im2col)", compile_numpy(o2.copy())))
    for prim in _single_primitives(o2):
        if prim in skip:
            continue
        runs.append(_planned(o2, f"all-{prim}", only=frozenset({prim}), **common))
    return runs, inputs, {"reference": reference, "measure_s": measure_s}


def check(runs: list[PlanRun], inputs: dict, reference: dict[str, np.ndarray]) -> list[str]:
    """Names of plans whose outputs differ from the reference (relative 1e-3: Winograd/FFT inside)."""
    bad = []
    for run in runs:
        out = run.exe.run(inputs)
        for k, ref in reference.items():
            err = float(np.abs(out[k] - ref).max())
            if err > 1e-3 * max(float(np.abs(ref).max()), 1e-6):
                bad.append(f"{run.name} ({k}: max abs error {err:.2e})")
    return bad


def time_round_robin(runs: list[PlanRun], inputs: dict, repeats: int, cpu: bool) -> None:
    """Each plan once per round. With a single-threaded BLAS the process CPU time is recorded:
    it excludes the time other processes hold the shared cores, which wall time cannot."""
    clock = time.process_time if cpu else time.perf_counter
    for run in runs:
        run.exe.run(inputs)  # warm-up: packs weights
        run.times, run.wall = [], []
    for _ in range(repeats):
        for run in runs:
            t0, w0 = clock(), time.perf_counter()
            run.exe.run(inputs)
            run.times.append(clock() - t0)
            run.wall.append(time.perf_counter() - w0)


def report(model: str, runs: list[PlanRun], info: dict) -> None:
    best_other = min(statistics.median(r.times) for r in runs if r.name != "pbqp")
    pbqp = statistics.median(runs[0].times)
    print(f"\n## {model}  (PBQP plan {pbqp * 1e3:.1f} ms vs best other {best_other * 1e3:.1f} ms: "
          f"{(pbqp / best_other - 1) * 100:+.1f}%; first selection incl. measuring {info['measure_s']:.1f} s)")
    print(f"| {'plan':<24} | {'median ms':>9} | {'min ms':>8} | {'wall ms':>8} | {'vs O2':>6} | "
          f"{'predicted ms':>12} | {'conversions':>11} | {'solve ms':>8} |")
    print(f"|{'-' * 26}|{'-' * 11}|{'-' * 10}|{'-' * 10}|{'-' * 8}|{'-' * 14}|{'-' * 13}|{'-' * 10}|")
    base = statistics.median(next(r for r in runs if r.name.startswith("default")).times)
    for r in sorted(runs, key=lambda r: statistics.median(r.times)):
        med = statistics.median(r.times)
        print(f"| {r.name:<24} | {med * 1e3:9.2f} | {min(r.times) * 1e3:8.2f} | "
              f"{statistics.median(r.wall) * 1e3:8.2f} | {base / med:5.2f}x | "
              f"{r.predicted_ms:12.2f} | {r.conversions:11d} | {r.solve_ms:8.2f} |")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (0: library default)")
    p.add_argument("--cache", default=None, help="cost cache file (default: the user cache)")
    p.add_argument("--costs", default="measure", choices=["measure", "cache", "model"])
    p.add_argument("--skip", default="", help="single-primitive plans to leave out, e.g. kn2row,kn2col")
    p.add_argument("--pack-mb", type=int, default=6144, help="packed-weight cache bound (MiB)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from threadpoolctl import threadpool_limits

    limit = threadpool_limits(args.threads, user_api="blas") if args.threads else None
    # Room for every plan's packed weights (Winograd filters, FFT spectra, CSR matrices): with the
    # default bound, plans run round-robin would evict each other's and re-pack on every run.
    set_pack_limit(args.pack_mb << 20)
    try:
        for model in [m for m in args.models.split(",") if m]:
            runs, inputs, info = build_plans(model, args.cache, args.costs, frozenset(args.skip.split(",")))
            bad = check(runs, inputs, info["reference"])
            time_round_robin(runs, inputs, args.repeats, cpu=args.threads == 1)
            report(model, runs, info)
            print(f"(packed weights held: {packed_bytes() >> 20} MiB)")
            if bad:
                print("OUTPUT MISMATCH: " + "; ".join(bad))
            sys.stdout.flush()
    finally:
        if limit is not None:
            limit.restore_original_limits()
    return 0


if __name__ == "__main__":
    sys.exit(main())
