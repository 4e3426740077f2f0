"""Dense vs sparse primitives on pruned layers, and what primitive selection (PBQP) picks.

Layers: AlexNet FC6 (9216->4096) and VGG-16 FC6 (25088->4096) at batch 1, a ResNet-18 3x3 conv
(64->64 at 56x56) and a MobileNet 1x1 conv (512->512 at 14x14), each magnitude-pruned to 0, 50, 75,
90 and 95% sparsity (random normal weights). Per layer and sparsity: the median time of every
primitive that applies (NCHW; timed round-robin), the best dense and best sparse one, and the
PBQP's pick on the one-layer graph (measured costs, a fresh cost cache) with the pick's median time.
TVM columns: the layer's dense and sparse TVM kernels (backends/tvm: sparse_fc.py, sparse_conv.py)
timed with time_evaluator (wall-clock medians; TVM threads = --threads; the dense kernel is the same
at every sparsity, so it is timed once per layer: sparse_select caches times per kernel), and what
compile_tvm(sparse="measure") keeps ("dense*": effective density >= 0.5, kept dense untimed).

    python3 bench/bench_sparse.py [--repeats 7] [--layers fc6_alexnet,conv3x3] [--out table.md] [--quick] [--no-tvm]

`--quick` (a check that it runs, a few minutes): 3 repeats, no VGG FC6, sparsities 0, 75, 95%.

Not part of the test suite (VGG FC6 alone is 400 MB of weights). The machine is shared: medians
of >= 7 repeats, and `uptime` is printed with the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
from lpdc.backends.numpy.primitives import get_primitive, set_pack_limit
from lpdc.ir import Graph, TensorType
from lpdc.passes.select.choices import primitive_choices
from lpdc.passes.select.measure import blas_threads, cpu_clock, node_runner
from lpdc.passes.select.select_primitives import select, select_config
from lpdc.passes.sparsify import magnitude_prune

SPARSITIES = (0.0, 0.5, 0.75, 0.9, 0.95)
SELECT_BUDGET_S = 0.3  # selection's benchmark time per choice: more than compile's default, the host is noisy
LAYERS = {  # name -> (op, input shape, weight shape, attrs)
    "fc6_alexnet": ("fully_connected", (1, 9216), (4096, 9216), {}),
    "fc6_vgg16": ("fully_connected", (1, 25088), (4096, 25088), {}),
    "conv3x3_resnet18": ("conv", (1, 64, 56, 56), (64, 64, 3, 3), {"pad": [1, 1, 1, 1]}),
    "conv1x1_mobilenet": ("conv", (1, 512, 14, 14), (512, 512, 1, 1), {}),
}


def layer_graph(name: str, sparsity: float) -> Graph:
    op, xs, ws, attrs = LAYERS[name]
    g = Graph(name)
    x = g.add_input("x", TensorType(xs))
    w = g.add_const(np.random.default_rng(0).standard_normal(ws, dtype=np.float32), "w")
    g.set_outputs([g.op(op, x, w, name="layer", **attrs)])
    return magnitude_prune(g, sparsity) if sparsity > 0 else g


def interleaved(runners: dict[str, object], repeats: int) -> dict[str, float]:
    """Median seconds of each runner, timed round-robin so load from other processes hits all alike
    (process CPU time when the BLAS is single-threaded: time other processes take is not counted)."""
    clock = cpu_clock()
    times: dict[str, list[float]] = {}
    for k, fn in runners.items():
        fn()  # warm-up: packs the weights
        t0 = clock()
        fn()
        times[k] = [clock() - t0]
    for _ in range(repeats - 1):
        for k, fn in runners.items():
            if times[k][0] > 1.0 and len(times[k]) >= 3:  # hopeless choices: three runs are enough
                continue
            t0 = clock()
            fn()
            times[k].append(clock() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def measure(name: str, sparsity: float, repeats: int, cache: str) -> dict:
    g = layer_graph(name, sparsity)
    node = next(n for n in g.nodes if n.name == "layer")
    plans = []
    with select_config(costs="measure", cache_path=cache, budget_s=SELECT_BUDGET_S, on_plan=plans.append):
        select(g.copy())
    pick = plans[0].choices["layer"].split("@")[0]
    runners = {prim.name: node_runner(node, g, choice) for choice, prim in primitive_choices(node, g)
               if choice.layout in ("NCHW", "-") or prim.name == pick}
    times = interleaved(runners, repeats)
    dense = {k: v for k, v in times.items() if get_primitive(k).family != "sparse"}
    sparse = {k: v for k, v in times.items() if get_primitive(k).family == "sparse"}
    best_d = min(dense, key=dense.get)
    best_s = min(sparse, key=sparse.get) if sparse else None
    return {"layer": name, "sparsity": sparsity, "dense": best_d, "dense_ms": dense[best_d] * 1e3,
            "sparse": best_s or "-", "sparse_ms": sparse[best_s] * 1e3 if best_s else float("nan"),
            "pick": pick, "pick_ms": times[pick] * 1e3}


def measure_tvm(name: str, sparsity: float, repeats: int) -> dict:
    """Dense and sparse TVM kernel medians (timed at every sparsity) and compile's measured pick."""
    from lpdc.backends.tvm import sparse_select as SS
    from lpdc.backends.tvm.target import tvm_target

    g = layer_graph(name, sparsity)
    node = next(n for n in g.nodes if n.name == "layer")
    tt = tvm_target("x86")
    SS.REPEATS = repeats
    dense_s, sparse_s = SS.measure_pair(node, g, tt)
    record: dict[str, dict] = {}
    SS.pick_sparse(node, g, tt, None, "measure", record)  # the timings above are cached: same kernels
    ch = record["layer"]
    return {"tvm_dense_ms": dense_s * 1e3, "tvm_sparse_ms": sparse_s * 1e3, "tvm_density": ch["density"],
            "tvm_pick": ch["picked"] + ("*" if ch["how"] == "too dense" else "")}


def table(rows: list[dict]) -> str:
    tvm = all("tvm_pick" in r for r in rows)
    head = "| layer | sparsity | best dense | ms | best sparse | ms | dense/sparse | PBQP pick | ms | pick/dense |"
    rule = "|---|---|---|---|---|---|---|---|---|---|"
    if tvm:
        head += " TVM eff. density | TVM dense ms | TVM sparse ms | TVM dense/sparse | TVM measured pick |"
        rule += "---|---|---|---|---|"
    out = [head, rule]
    for r in rows:
        speed = r["dense_ms"] / r["sparse_ms"] if r["sparse"] != "-" else float("nan")
        line = (f"| {r['layer']} | {r['sparsity']:.0%} | {r['dense']} | {r['dense_ms']:.2f} | {r['sparse']} | "
                f"{r['sparse_ms']:.2f} | {speed:.2f}x | {r['pick']} | {r['pick_ms']:.2f} | "
                f"{r['pick_ms'] / r['dense_ms']:.2f} |")
        if tvm:
            line += (f" {r['tvm_density']:.2f} | {r['tvm_dense_ms']:.3f} | {r['tvm_sparse_ms']:.3f} | "
                     f"{r['tvm_dense_ms'] / r['tvm_sparse_ms']:.2f}x | {r['tvm_pick']} |")
        out.append(line)
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--layers", default=",".join(LAYERS))
    ap.add_argument("--sparsities", default=",".join(f"{s:g}" for s in SPARSITIES))
    ap.add_argument("--out", help="also write the table (markdown) here")
    ap.add_argument("--threads", type=int, default=1, help="BLAS and TVM threads (1: stable CPU-time "
                    "measurements on a shared machine; 0: leave the defaults)")
    ap.add_argument("--quick", action="store_true", help="3 repeats, no VGG FC6, sparsities 0, 0.75, 0.95")
    ap.add_argument("--no-tvm", action="store_true", help="skip the TVM columns")
    args = ap.parse_args(argv)
    if args.quick:
        args.repeats = 3
        args.layers = ",".join(n for n in args.layers.split(",") if n != "fc6_vgg16")
        args.sparsities = "0,0.75,0.95"
    tvm = not args.no_tvm and importlib.util.find_spec("tvm") is not None
    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        if tvm:
            import tvm as _tvm

            os.environ["TVM_NUM_THREADS"] = str(args.threads)  # TVM's cap is cores / 2 without it
            _tvm.get_global_func("runtime.config_threadpool")(1, args.threads)
    set_pack_limit(8 << 30)  # keep VGG's sparse copies packed, as a deployed model would
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = os.path.join(tmp, "costs.json")
        for name in args.layers.split(","):
            for s in (float(x) for x in args.sparsities.split(",")):
                rows.append(measure(name, s, args.repeats, cache))
                if tvm:
                    rows[-1].update(measure_tvm(name, s, args.repeats))
                print(table(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    up = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    text = f"uptime: {up}; BLAS threads {blas_threads()}, clock {cpu_clock().__name__}\n\n{table(rows)}"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
