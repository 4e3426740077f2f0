"""Pruning + quantization on the trained digits CNN, and the layer-aware (prune ratio, bits) search.

Part 1: test accuracy at each magnitude sparsity (per layer / global threshold), float and int8.
Part 2: the greedy layer-aware search (passes/sparsify/layer_search.py) on the validation split,
measured latency (-O3, measured primitive costs), within an accuracy budget; prints the Pareto
front (latency, size, accuracy) as a markdown table and plots it.

    python3 bench/bench_compress.py [--budget 0.03] [--plot pareto.png] [--repeats 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys

import lpdc
from lpdc.passes.sparsify.layer_search import Evaluator, format_points, search
from lpdc.tools.digits_cnn import accuracy, digits_split, train_digits_cnn


def accuracy_table(seed: int = 0) -> str:
    graph, (x, y) = train_digits_cnn(seed)
    calib = [{"x": digits_split(seed).x_train[:150]}]
    lines = ["| sparsity | float (per layer) | float (global) | int8 (per layer) | int8 (global) |",
             "|---|---|---|---|---|"]
    for s in (0.0, 0.2, 0.3, 0.5, 0.75, 0.9):
        cells = []
        for quant in (False, True):
            for scope in ("layer", "global"):
                g = lpdc.prune(graph, s, scope=scope)
                if quant:
                    g = lpdc.quantize(g, calibration=calib, scheme="int8")
                cells.append(accuracy(g, x, y))
        f1, f2, q1, q2 = cells
        lines.append(f"| {s:.0%} | {f1:.2%} | {f2:.2%} | {q1:.2%} | {q2:.2%} |")
    return "\n".join(lines)


def plot(points, front, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([p.latency_s * 1e3 for p in points], [p.accuracy for p in points], c="lightgray", label="tried")
    sc = ax.scatter([p.latency_s * 1e3 for p in front], [p.accuracy for p in front],
                    c=[p.size_bytes / 1024 for p in front], cmap="viridis", label="Pareto front")
    fig.colorbar(sc, label="weights KiB")
    ax.set_xlabel("latency ms (batch 150)")
    ax.set_ylabel("validation accuracy")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=0.03)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--plot", default="pareto.png")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (1: stable CPU-time measurements)")
    args = ap.parse_args(argv)
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}\n")
    print("## digits CNN test accuracy after magnitude pruning (no fine-tuning)\n")
    print(accuracy_table())
    graph, _ = train_digits_cnn(0)
    d = digits_split(0)
    ev = Evaluator(graph, ("conv1", "conv2", "fc"), [{"x": d.x_train[:150]}],
                   lambda exe: accuracy(exe, d.x_val, d.y_val), {"x": d.x_val[:150]}, repeats=args.repeats,
                   costs="measure")
    result = search(ev, ratios=(0.0, 0.25, 0.5, 0.75, 0.9), bits=(32, 8, 6, 4), budget=args.budget,
                    max_steps=args.steps)
    print(f"\n## layer-aware search: {len(result.points)} configurations, budget {args.budget:.0%} "
          f"(baseline accuracy {result.baseline.accuracy:.2%})\n")
    print("baseline:\n" + format_points(result.layers, [result.baseline]))
    print("\nbest within budget (min latency):\n" + format_points(result.layers, [result.best]))
    print("\nPareto front (latency, size, accuracy):\n" + format_points(result.layers, result.pareto))
    plot(result.points, result.pareto, args.plot)
    print(f"\nplot: {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
