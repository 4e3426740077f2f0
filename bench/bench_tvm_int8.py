"""int8 vs float through the TVM x86 backend, side by side in one process (batch 1).

For each zoo model (O2-optimised, random weights): quantize to int8 (per-channel weights,
per-tensor activations, calibrated on a few random inputs), build both graphs with
`lpdc.compile(..., "x86")`, then alternate float and int8 runs (so drifting machine speed hits
both alike) and report the medians, float/int8 = the speed-up, what the int8 build ran on
(integer kernels, fused epilogues, NumPy fallbacks) and how close its output is to float
(top-1 agreement over the inputs and output SQNR, both on the logits: the softmax is dropped).

    python3 bench/bench_tvm_int8.py [--models resnet18 resnet50 googlenet mobilenet_v2] [--repeats 15]
           [--threads 2] [--json OUT.json]

Not part of the test suite (each model builds twice). The machine is shared: medians.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import time

import numpy as np


def _args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet18"])
    p.add_argument("--repeats", type=int, default=15, help="timed runs of each build (median reported)")
    p.add_argument("--threads", type=int, default=0, help="TVM threads (0: TVM's default, all cores)")
    p.add_argument("--inputs", type=int, default=8, help="random inputs for top-1 agreement / SQNR")
    p.add_argument("--json", help="write the rows here")
    return p.parse_args()


def run_model(name: str, args: argparse.Namespace) -> dict:
    import lpdc
    from lpdc.passes.manager import PassManager, pipeline
    from lpdc.tools.zoo import build

    g = build(name)
    soft = [v for v in g.outputs if v.producer is not None and v.producer.op == "softmax"]
    if soft:  # compare the logits: a softmax of random weights saturates and hides the error
        g.set_outputs([soft[0].producer.inputs[0]])
    PassManager(pipeline(2)).run(g)
    rng = np.random.default_rng(0)
    x = g.inputs[0]
    calib = [{x.name: rng.standard_normal(x.type.shape).astype(np.float32)} for _ in range(4)]
    q = lpdc.quantize(g, calibration=calib, scheme="int8")
    t0 = time.perf_counter()
    f32 = lpdc.compile(g, "x86")
    t1 = time.perf_counter()
    i8 = lpdc.compile(q, "x86")
    t2 = time.perf_counter()
    feeds = [{x.name: rng.standard_normal(x.type.shape).astype(np.float32)} for _ in range(args.inputs)]
    agree, sqnr = [], []
    out = g.outputs[0].name
    for f in feeds:
        a, b = f32.run(f)[out], i8.run(f)[out]
        agree.append(float((a.argmax(-1) == b.argmax(-1)).mean()))
        sqnr.append(10 * np.log10(float((a.astype(np.float64) ** 2).sum()) / max(float(((a - b) ** 2).sum()), 1e-30)))
    tf, ti = [], []
    for _ in range(2):  # warm-up
        f32.run(feeds[0])
        i8.run(feeds[0])
    for _ in range(args.repeats):
        s = time.perf_counter()
        f32.run(feeds[0])
        tf.append(time.perf_counter() - s)
        s = time.perf_counter()
        i8.run(feeds[0])
        ti.append(time.perf_counter() - s)
    kinds = collections.Counter("+".join([s.node.op] + [n.op for n in s.fused]) if s.func else f"numpy:{s.node.op}"
                                for s in i8.plan.steps)
    return {"model": name, "f32_ms": statistics.median(tf) * 1e3, "int8_ms": statistics.median(ti) * 1e3,
            "speedup": statistics.median(tf) / statistics.median(ti), "top1_agree": float(np.mean(agree)),
            "sqnr_db": float(np.median(sqnr)), "build_f32_s": t1 - t0, "build_int8_s": t2 - t1,
            "int8_steps": dict(kinds), "numpy_fallbacks": len(i8.fallbacks)}


def main() -> None:
    args = _args()
    if args.threads:
        os.environ["TVM_NUM_THREADS"] = str(args.threads)
    rows = []
    print("| model | float ms | int8 ms | float/int8 | top-1 agree | SQNR dB | int8 NumPy fallbacks |")
    print("|---|---|---|---|---|---|---|")
    for name in args.models:
        r = run_model(name, args)
        rows.append(r)
        print(f"| {name} | {r['f32_ms']:.2f} | {r['int8_ms']:.2f} | {r['speedup']:.2f}x | {r['top1_agree']:.2f} | "
              f"{r['sqnr_db']:.1f} | {r['numpy_fallbacks']} |", flush=True)
    for r in rows:
        print(f"{r['model']}: int8 steps {r['int8_steps']}", file=sys.stderr)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
