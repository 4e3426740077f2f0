"""Depthwise + 1x1 fusion (backends/tvm/dw_pw_fusion.py) on and off, side by side, per model.

Both builds of one model live in this process; each round times a block of runs of each (the
order alternating between rounds), and the ratio fused / apart is taken per round, so a drift in
machine load between rounds cancels. Prints the median ms of each build, the median ratio and its
interquartile range, and how many pairs fused; outputs are checked equal first.

    python3 bench/bench_dw_fusion.py --models mobilenet_v1,mobilenet_v2 --rounds 40

Not part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import lpdc
import numpy as np
from lpdc.backends.tvm.variant_check import alternating_rounds
from lpdc.ir import random_inputs
from lpdc.tools import zoo

BLOCK = 5  # runs per engine per round (after one warm-up)


def bench_model(name: str, rounds: int) -> dict:
    g = zoo.build(name)
    feed = random_inputs(g)
    apart = lpdc.compile(g, "x86", fuse_depthwise=False)
    fused = lpdc.compile(g, "x86")
    for k, v in apart.run(feed).items():
        np.testing.assert_allclose(fused.run(feed)[k], v, rtol=0, atol=1e-5 * float(np.abs(v).max()))
    ratios, ta, tf = alternating_rounds(lambda: apart.run(feed), lambda: fused.run(feed), rounds, BLOCK)
    q = statistics.quantiles(ratios, n=4)
    pairs = sum(1 for s in fused.plan.steps if s.fused and fused.plan.kernels[s.func].schedule == "dw_pw")
    return {"model": name, "apart_ms": statistics.median(ta) * 1e3, "fused_ms": statistics.median(tf) * 1e3,
            "ratio": statistics.median(ratios), "q1": q[0], "q3": q[2], "pairs": pairs}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="mobilenet_v1,mobilenet_v2")
    p.add_argument("--rounds", type=int, default=40)
    args = p.parse_args(argv)
    print(f"{'model':15s} {'apart ms':>9s} {'fused ms':>9s} {'fused/apart':>12s} {'IQR':>13s} {'pairs':>6s}")
    for name in args.models.split(","):
        r = bench_model(name, args.rounds)
        print(f"{r['model']:15s} {r['apart_ms']:9.3f} {r['fused_ms']:9.3f} {r['ratio']:12.3f} "
              f"{r['q1']:6.3f}-{r['q3']:.3f} {r['pairs']:6d}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
