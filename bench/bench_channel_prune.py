"""Channel pruning of ResNet-18 (zoo, random weights): shapes, finiteness and latency drop.

Prunes `--ratio` of the output channels of every prunable conv (the inner conv of each residual
block), verifies the graph, checks the output, and times dense and pruned models at -O2
interleaved round-robin (median of `--repeats`).

    python3 bench/bench_channel_prune.py [--ratio 0.5] [--repeats 7]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

import numpy as np
from lpdc import compile, prune
from lpdc.passes.select.measure import blas_threads, cpu_clock
from lpdc.passes.sparsify import prunable_convs
from lpdc.tools.zoo import build


def macs(g) -> int:
    return sum(int(np.prod(n.outputs[0].type.shape)) * int(np.prod(n.inputs[1].type.shape[1:]))
               for n in g.nodes if n.op == "conv")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet18")
    ap.add_argument("--ratio", type=float, default=0.5)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (1: stable CPU-time measurements)")
    args = ap.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    g = build(args.model)
    convs = prunable_convs(g)
    p = prune(g, args.ratio, method="channel")
    p.verify()
    params = lambda h: sum(a.size for a in h.params.values())  # noqa: E731
    x = {g.inputs[0].name: np.random.default_rng(0).standard_normal(g.inputs[0].type.shape).astype(np.float32)}
    exes = {"dense": compile(g, opt_level=2), "pruned": compile(p, opt_level=2)}
    clock = cpu_clock()
    times: dict[str, list[float]] = {k: [] for k in exes}
    outs = {k: e.run(x) for k, e in exes.items()}
    for _ in range(args.repeats):
        for k, e in exes.items():
            t0 = clock()
            e.run(x)
            times[k].append(clock() - t0)
    y = next(iter(outs["pruned"].values()))
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")
    print(f"BLAS threads {blas_threads()}, clock {clock.__name__}")
    print(f"{args.model}: {len(convs)} prunable convs ({', '.join(n.name for n in convs)})")
    print(f"output {y.shape}, finite {bool(np.isfinite(y).all())}, verify ok")
    print(f"params  {params(g) / 1e6:.2f} M -> {params(p) / 1e6:.2f} M")
    print(f"conv MACs {macs(g) / 1e9:.3f} G -> {macs(p) / 1e9:.3f} G")
    print(f"latency (median of {args.repeats}, -O2) dense {med['dense']:.1f} ms -> pruned {med['pruned']:.1f} ms "
          f"({med['dense'] / med['pruned']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
