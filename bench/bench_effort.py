"""Dynamic effort knobs (SPET, SDSS, SFMA) on the digits CNN: operations, accuracy, wall time, energy;
then the DRAM-retention curve. The experiment of seed 002 (chapters 2 and 4) on lpdc's NumPy backend.

For each knob alone and for all three together, the thresholds are tuned per layer by binary search
on the validation split (300 images) under a 0.5-point top-1 budget, then everything is reported on
the held-out test split (450 images):
  ops    = 2 x MACs performed + the knobs' own overhead operations, over conv and fc layers
  time   = median over interleaved rounds of one pass over the test split, three ways: the reference
           executable (one BLAS product per layer), the approximate engine with knobs off (neuron by
           neuron, the like-for-like baseline, as the seed's plain C++ convolution) and with knobs on
  energy = tools/energy.py at batch 1 (45 nm table), compute scaled by each layer's measured ops ratio

    python3 bench/bench_effort.py [--rounds 15] [--json out.json]

Not part of the test suite (tests/test_effort_tune.py asserts the goal); takes about a minute.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass

import numpy as np
from lpdc.backends.numpy import compile_numpy
from lpdc.backends.numpy.approx import ApproxExecutable, EffortConfig, to_json
from lpdc.passes.effort import predict_top1, tune_effort
from lpdc.tools.digits_cnn import digits_graph, digits_split, train_digits_cnn, weights_of
from lpdc.tools.energy import estimate
from lpdc.tools.faults import format_curve, parse_p_retain, retention_curve

BUDGET = 0.005
VARIANTS = {  # name -> tune_effort options
    "SPET": {"knobs": ("spet",)},
    "SFMA": {"knobs": ("sfma",)},
    "SDSS": {"knobs": ("sdss",)},
    "combined": {},
    "combined, SPET interval searched": {"spet_fractions": (0.5, 0.375, 0.25)},
}


@dataclass
class Row:
    name: str
    config: EffortConfig
    val: float
    test: float
    reduction: float
    mac_reduction: float
    overhead_share: float
    skipped: dict[str, float]
    layers: dict[str, float]


def measure(graph, name: str, config: EffortConfig, split) -> Row:
    exe = ApproxExecutable(graph, config)
    val = float(np.mean(predict_top1(exe, split.x_val) == split.y_val))
    exe.reset_counts()
    test = float(np.mean(predict_top1(exe, split.x_test) == split.y_test))
    t = exe.total()
    skipped = {k: getattr(t, f"skipped_{k}") / t.dense_macs for k in ("spet", "sdss", "sfma")}
    return Row(name, config, val, test, t.reduction, t.dense_macs / t.macs, t.overhead / t.ops, skipped,
               {k: c.reduction for k, c in exe.counts.items()})


def timings(graph, rows: list[Row], x: np.ndarray, rounds: int) -> dict[str, float]:
    exes = {"reference (BLAS)": compile_numpy(graph), "engine, knobs off": ApproxExecutable(graph, force_engine=True)}
    exes.update({r.name: ApproxExecutable(graph, r.config) for r in rows})
    samples: dict[str, list[float]] = {k: [] for k in exes}
    for _ in range(rounds):  # interleaved, so load from other processes hits every variant alike
        for k, exe in exes.items():
            t0 = time.perf_counter()
            predict_top1(exe, x)
            samples[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1e3 for k, v in samples.items()}


def energy(graph, rows: list[Row], split) -> dict[str, float]:
    one = digits_graph(weights_of(graph), batch=1)
    out = {"exact": estimate(one).total()}
    for r in rows:
        exe = ApproxExecutable(graph, r.config)
        predict_top1(exe, split.x_test)
        scale = {k: 1.0 / c.reduction for k, c in exe.counts.items()}
        out[r.name] = estimate(one, compute_scale=scale).total()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    graph, _ = train_digits_cnn(seed=0)
    split = digits_split(0)
    base = measure(graph, "exact", EffortConfig(), split)
    rows = []
    for name, opts in VARIANTS.items():
        t0 = time.perf_counter()
        result = tune_effort(graph, split.x_val, split.y_val, budget=BUDGET, **opts)
        rows.append(measure(graph, name, result.config, split))
        print(f"tuned {name} in {time.perf_counter() - t0:.1f} s: "
              + "; ".join(f"{k}: {v.describe()}" for k, v in result.config.items()))
    times = timings(graph, rows, split.x_test, args.rounds)
    joules = energy(graph, rows, split)
    print(f"\nexact: val {base.val:.4f}, test {base.test:.4f}; tuning budget {100 * BUDGET:.1f} points on val\n")
    print("| variant | ops reduction | MAC reduction | overhead | test acc | change (pts) | val acc "
          "| time ms | vs engine off | energy uJ |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    off = times["engine, knobs off"]
    print(f"| exact (reference, BLAS) | 1.00x | 1.00x | 0 | {base.test:.4f} | 0.00 | {base.val:.4f} "
          f"| {times['reference (BLAS)']:.2f} | - | {joules['exact'] / 1e6:.4f} |")
    print(f"| engine, knobs off | 1.00x | 1.00x | 0 | {base.test:.4f} | 0.00 | {base.val:.4f} | {off:.2f} "
          "| 1.00x | - |")
    for r in rows:
        print(f"| {r.name} | {r.reduction:.2f}x | {r.mac_reduction:.2f}x | {100 * r.overhead_share:.1f}% "
              f"| {r.test:.4f} | {100 * (r.test - base.test):+.2f} | {r.val:.4f} | {times[r.name]:.2f} "
              f"| {off / times[r.name]:.2f}x | {joules[r.name] / 1e6:.4f} |")
    print("\nMACs skipped (share of dense) and per-layer ops reduction:")
    for r in rows:
        print(f"  {r.name:34} " + "  ".join(f"{k} {100 * v:5.1f}%" for k, v in r.skipped.items()) + "   "
              + "  ".join(f"{k} {v:.2f}x" for k, v in r.layers.items()))
    print()
    p = parse_p_retain("0.9..1.0")
    curves = {m: retention_curve(graph, p, split.x_test, split.y_test, trials=5, model=m) for m in ("bit", "word")}
    for c in curves.values():
        print(format_curve(c), end="\n\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"base": {"val": base.val, "test": base.test}, "times_ms": times, "energy_pj": joules,
                       "rows": [{"name": r.name, "config": to_json(r.config), "val": r.val, "test": r.test,
                                 "reduction": r.reduction, "skipped": r.skipped, "layers": r.layers} for r in rows]},
                      f, indent=2)


if __name__ == "__main__":
    main()
