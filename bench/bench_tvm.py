"""lpdc's TVM x86 backend (default knobs, and tuned) vs ONNX Runtime vs TVM Relax's default build, side by side.

For each zoo model (batch 1, 224x224 unless the model says otherwise): build lpdc x86 (compile time
recorded) with default knobs and tuned (`variants="measure"`: every conv's register tiles and
Winograd timed here, the fastest kept; times cached on disk, so the tuned build time shown is a
first build's only when the cache is empty), export the same graph to ONNX
(lpdc.frontends.onnx_export) and load it in ONNX Runtime (CPU provider, 2 threads) and, unless
--no-relax, in TVM Relax (from_onnx + tvm.compile, no tuning). All engines run in this one process, in
blocks of consecutive runs per engine over --rounds rounds (load drifts hit each alike), median of
--repeats runs each; the ratios to ONNX Runtime are medians of per-round ratios (a drift in machine
speed between rounds cancels); outputs (the softmax) are checked against ONNX Runtime. Also reports the
measured fp32 GEMM peak (NumPy/BLAS, 2 threads) and the achieved GFLOP/s of each model's three
heaviest conv layers.

    python3 bench/bench_tvm.py --models resnet18,resnet50 --repeats 10 [--no-relax] [--check-all]

`--check-all` only checks numerics of the whole zoo (TVM x86 vs the NumPy reference, logits).
Not part of the test suite: it takes minutes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import lpdc
import numpy as np
from lpdc.ir import Graph
from lpdc.tools import zoo

SETTLE_S = 0.3  # idle time between engine blocks
DEFAULT_MODELS = "mobilenet_v1,mobilenet_v2,resnet18,resnet50,squeezenet1_1,googlenet"


def gemm_peak(n: int = 1024, reps: int = 30) -> dict[str, float]:
    """Best fp32 GFLOP/s on an n^3 GEMM of NumPy's BLAS and of ONNX Runtime's MatMul (MLAS, 2
    threads): the host's measured compute roof is the better of the two (NumPy's OpenBLAS may not
    know the CPU and run older vector code)."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    a = np.random.default_rng(0).standard_normal((n, n)).astype(np.float32)
    b = a.T.copy()
    a @ b
    out = {"numpy": 2 * n ** 3 / min(_timed(lambda: a @ b) for _ in range(reps)) / 1e9}
    graph = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                              [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
                              [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    sess = ort.InferenceSession(model.SerializeToString(),
                                so, providers=["CPUExecutionProvider"])
    feeds = {"a": a, "b": b}
    sess.run(None, feeds)
    out["ort"] = 2 * n ** 3 / min(_timed(lambda: sess.run(None, feeds)) for _ in range(reps)) / 1e9
    return out


def _timed(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


Engines = dict[str, Callable[[], object]]


def build_engines(g: Graph, x: np.ndarray, relax: bool,
                  tuned: dict | None = None) -> tuple[Engines, dict[str, float], object]:
    """name -> zero-argument run function, compile times, the lpdc executable. `tuned`: options of
    a second, tuned lpdc build ("tuned" engine), e.g. {"variants": "measure"}."""
    import onnxruntime as ort
    from lpdc.frontends.onnx_export import export_onnx

    name = g.inputs[0].name
    t = time.perf_counter()
    exe = lpdc.compile(g, "x86")
    times = {"lpdc": time.perf_counter() - t}
    engines: Engines = {"lpdc": lambda: exe.run({name: x})}
    if tuned is not None:
        t = time.perf_counter()
        tex = lpdc.compile(g, "x86", **tuned)
        times["tuned"] = time.perf_counter() - t
        engines["tuned"] = lambda: tex.run({name: x})
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "m.onnx"
        export_onnx(g, path)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 2
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        iname = sess.get_inputs()[0].name
        engines["ort"] = lambda: sess.run(None, {iname: x})
        if relax:
            t = time.perf_counter()
            engines["relax"] = _relax_engine(path, x)
            times["relax"] = time.perf_counter() - t
    return engines, times, exe


def _relax_engine(path: Path, x: np.ndarray) -> Callable[[], object]:
    import onnx
    import tvm
    from lpdc.backends.tvm.target import tvm_target
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(onnx.load(str(path)), keep_params_in_input=False)
    ex = tvm.compile(mod, target=tvm_target("x86").tvm())
    vm = relax.VirtualMachine(ex, tvm.cpu())
    tx = tvm.runtime.tensor(x, tvm.cpu())
    return lambda: vm["main"](tx)


def heaviest_convs(exe, x: np.ndarray, k: int = 3, repeats: int = 10) -> list[tuple[str, float, float]]:
    """(name, ms, GFLOP/s) of the k conv kernels with the most FLOPs, from profiled runs (median of
    `repeats`). A fused kernel (depthwise + 1x1) counts both convs, named "dw+pw"."""
    g = exe.graph
    time.sleep(SETTLE_S)  # the last engine's spinning workers asleep first, as for the model timings
    _, timings = exe.profile({g.inputs[0].name: x}, repeats=repeats)
    steps = {s.node.name: s for s in exe.plan.steps}
    rows = []
    for t in timings:
        s = steps[t.name]
        nodes = [s.node, *s.fused]
        if s.node.op != "conv":
            continue
        flops = sum(2 * n.schema.flops([v.type if v is not None else None for v in n.inputs],
                                       [v.type for v in n.outputs], n.attrs).mul for n in nodes)
        rows.append((flops, "+".join(n.name for n in nodes), t.seconds))
    rows.sort(reverse=True)
    return [(name, s * 1e3, fl / s / 1e9) for fl, name, s in rows[:k]]


def bench_model(name: str, repeats: int, relax: bool, tuned: dict | None = None, rounds: int = 5) -> dict:
    g = zoo.build(name)
    x = np.random.default_rng(0).standard_normal(g.inputs[0].type.shape).astype(np.float32)
    engines, ctimes, exe = build_engines(g, x, relax, tuned)
    ref = engines["ort"]()[0]
    got = next(iter(exe.run({g.inputs[0].name: x}).values()))
    err = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-12))
    samples: dict[str, list[float]] = {k: [] for k in engines}
    # A discarded round first: right after the builds (LLVM, measured variants) the process runs
    # slowly for a few seconds (first-round ONNX Runtime runs measured 3-6x slower than later ones).
    for fn in engines.values():
        for _ in range(3):
            fn()
    # Blocks of consecutive runs per engine, in rounds (A B C A B C ...): runs of one engine back to
    # back keep another engine's spinning worker threads (TVM's pool, ORT's) out of its timings,
    # and the rounds spread slow drifts in machine load over all engines.
    rounds = max(1, min(rounds, repeats))
    per_round: dict[str, list[float]] = {k: [] for k in engines}
    for block in [repeats // rounds + (r < repeats % rounds) for r in range(rounds)]:
        for k, fn in engines.items():
            # Both runtimes' worker threads spin-wait after a parallel region; a pause lets the
            # previous engine's threads fall asleep before this engine's runs start.
            time.sleep(SETTLE_S)
            fn()  # warm-up
            runs = [_timed(fn) for _ in range(block)]
            samples[k] += runs
            per_round[k].append(statistics.median(runs))
    med = {k: statistics.median(v) * 1e3 for k, v in samples.items()}
    # Ratios to ONNX Runtime within each round, then their median: the machine's speed drifts
    # between rounds (by 1.5-2x on a shared VM) but hardly within one.
    ort = per_round["ort"]
    ratio = {k: statistics.median([a / b for a, b in zip(v, ort, strict=True)]) for k, v in per_round.items()}
    return {"model": name, "ms": med, "ratio": ratio, "compile_s": ctimes, "err_vs_ort": err,
            "fallbacks": exe.fallbacks, "convs": heaviest_convs(exe, x, repeats=max(repeats, 10))}


def check_all() -> int:
    """Every zoo model through TVM x86 against the NumPy reference (pre-softmax outputs)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_tvm_x86 import at_resolution

    bad = 0
    for name in zoo.MODELS:
        g = at_resolution(zoo.build(name), None)
        x = np.random.default_rng(0).standard_normal(g.inputs[0].type.shape).astype(np.float32)
        feeds = {g.inputs[0].name: x}
        ref = lpdc.compile(g, "numpy").run(feeds)
        exe = lpdc.compile(g, "x86")
        got = exe.run(feeds)
        errs = [float(np.abs(got[k] - r).max() / max(np.abs(r).max(), 1e-12)) for k, r in ref.items()]
        ok = max(errs) <= 1e-4
        bad += not ok
        ops = {n.name: n.op for n in exe.graph.nodes}
        print(f"{name:15s} rel err {max(errs):.2e} {'ok' if ok else 'FAIL'}  TVM kernels {len(exe.plan.kernels):3d}  "
              f"NumPy fallbacks {sorted({ops[n] for n in exe.fallbacks})}", flush=True)
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=DEFAULT_MODELS)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--rounds", type=int, default=5, help="rounds of engine blocks the repeats are split into")
    p.add_argument("--no-relax", action="store_true", help="skip TVM Relax's default build")
    p.add_argument("--check-all", action="store_true")
    p.add_argument("--no-tuned", action="store_true", help="skip the tuned lpdc build (variants measured here)")
    p.add_argument("--peak", type=float, default=0.0,
                   help="GFLOP/s to judge conv layers against (default: measured now; a busy machine under-reports)")
    args = p.parse_args(argv)
    if args.check_all:
        return check_all()
    print(f"load average before: {os.getloadavg()}")
    measured = gemm_peak()
    peak = args.peak or max(measured.values())
    print(f"measured fp32 GEMM peak (1024^3, best of 30): NumPy BLAS {measured['numpy']:.0f} GFLOP/s, ONNX Runtime "
          f"MatMul {measured['ort']:.0f} GFLOP/s; judging layers against {peak:.0f} GFLOP/s")
    tuned = None if args.no_tuned else {"variants": "measure"}
    cols = ["lpdc"] + ([] if tuned is None else ["tuned"]) + ["ort"] + ([] if args.no_relax else ["relax"])
    print(f"{'model':15s} " + " ".join(f"{c + ' ms':>10s}" for c in cols)
          + "  lpdc/ort" + ("  tuned/ort  tuned build s" if tuned else "") + "  lpdc build s  err vs ort")
    rows = []
    for name in args.models.split(","):
        r = bench_model(name, args.repeats, not args.no_relax, tuned, args.rounds)
        rows.append(r)
        ms = r["ms"]
        extra = f"  {r['ratio']['tuned']:9.2f}  {r['compile_s']['tuned']:13.1f}" if tuned else ""
        print(f"{name:15s} " + " ".join(f"{ms[c]:10.2f}" for c in cols)
              + f"  {r['ratio']['lpdc']:8.2f}{extra}  {r['compile_s']['lpdc']:12.1f}  {r['err_vs_ort']:.1e}",
              flush=True)
    for r in rows:
        convs = ", ".join(f"{n} {ms:.2f} ms {gf:.0f} GF/s ({gf / peak:.0%})" for n, ms, gf in r["convs"])
        print(f"  {r['model']}: heaviest convs: {convs}")
        if "relax" in r["compile_s"]:
            print(f"  {r['model']}: relax build {r['compile_s']['relax']:.1f} s")
    print(f"load average after: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
