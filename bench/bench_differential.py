"""Differential testing at scale: thousands of random CNNs through every engine (nightly-style).

For each seed, `lpdc.tools.random_cnn.random_cnn(seed)` is exported to ONNX and run by ONNX
Runtime (the oracle), then by lpdc NumPy (built graph at O0; re-imported at O0, O2 and O3 with
its PBQP plan, costs from the model) and TVM x86 every `--tvm-every` seeds when that target
works here. Any mismatch beyond 1e-4 x max|output| (+1e-6) or crash is printed with its seed
(`random_cnn(seed)` rebuilds the graph exactly); the exit status is 1 if there was one.

    python3 bench/bench_differential.py --count 2000 [--start 0] [--tvm-every 25] [--no-tvm]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections import Counter

from lpdc.tools.differential import check_graph, default_legs, model_costs, tvm_x86_available
from lpdc.tools.random_cnn import random_cnn


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000, help="random graphs to check")
    ap.add_argument("--start", type=int, default=0, help="first seed")
    ap.add_argument("--tvm-every", type=int, default=25, help="also run TVM x86 on every Nth graph")
    ap.add_argument("--no-tvm", action="store_true", help="skip the TVM x86 leg")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    reason = "--no-tvm" if args.no_tvm else tvm_x86_available()
    if reason:
        print(f"TVM x86 leg skipped: {reason}")
    plain, with_tvm = default_legs(tvm=False), default_legs(tvm=reason is None)
    checked, bad = Counter(), []
    worst: dict[str, float] = {}
    t0 = time.perf_counter()
    with model_costs():
        for seed in range(args.start, args.start + args.count):
            use_tvm = reason is None and seed % args.tvm_every == 0
            r = check_graph(random_cnn(seed), with_tvm if use_tvm else plain, seed=seed)
            for leg, e in r.errors.items():
                checked[leg] += 1
                worst[leg] = max(worst.get(leg, 0.0), e)
            if not r.ok:
                bad.append(seed)
                print(f"MISMATCH seed {seed}: {r.describe()}", flush=True)
    seconds = time.perf_counter() - t0
    print(f"{args.count} random graphs (seeds {args.start}..{args.start + args.count - 1}) in {seconds:.1f} s: "
          f"{len(bad)} mismatching")
    for leg in checked:
        print(f"  {leg:<10} {checked[leg]:6d} graphs, worst error {worst[leg]:.3f} x tolerance")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
