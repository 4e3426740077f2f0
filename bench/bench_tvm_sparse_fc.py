"""Dense vs sparse (sliced-ELL) TVM FC kernels on magnitude-pruned weights, batch 1.

For each (K, N), sparsity and thread count: the median time of the dense TVM FC (weights packed
[N/kb, K, kb]) and of the sparse one (backends/tvm/sparse_fc.py), and dense/sparse = the speed-up.
Also prints the effective density (padded ELL slots / dense weights) that selection looks at.

    python3 bench/bench_tvm_sparse_fc.py [--shapes 4096x4096,25088x4096] [--threads 1,2] [--repeats 7]

Not part of the test suite (25088x4096 is 400 MB of weights). The machine is shared: medians.
"""

from __future__ import annotations

import argparse
import os
import statistics

import numpy as np
import tvm
from lpdc.backends.tvm import compute as C
from lpdc.backends.tvm import sparse_fc as S
from lpdc.backends.tvm.schedules.x86_conv import schedule_fc
from lpdc.backends.tvm.target import tvm_target
from tvm import s_tir, te

SPARSITIES = (0.0, 0.5, 0.8, 0.9, 0.95)


def prune(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Zero the `sparsity` fraction of smallest-magnitude weights (what lpdc.prune magnitude does)."""
    if sparsity <= 0:
        return w
    thr = np.quantile(np.abs(w), sparsity)
    return np.where(np.abs(w) > thr, w, 0).astype(np.float32)


def build(tensors: list, schedule, name: str, tgt) -> object:
    f = te.create_prim_func(tensors).with_attr("global_symbol", name)
    sch = s_tir.Schedule(f)
    schedule(sch)
    return tvm.compile(tvm.IRModule({name: sch.mod["main"].with_attr("global_symbol", name)}), target=tgt).jit()


def timed(lib, name: str, args: list, repeats: int) -> float:
    dev = tvm.cpu()
    ev = lib.time_evaluator(name, dev, number=1, repeat=repeats, min_repeat_ms=100)
    return statistics.median(ev(*[tvm.runtime.tensor(a, dev) for a in args]).results)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shapes", default="4096x4096,25088x4096")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--sparsities", default=",".join(str(s) for s in SPARSITIES))
    a = ap.parse_args()
    tt = tvm_target("x86")
    tgt, vec = tt.tvm(), max(tt.vec, 4)
    threads = [int(t) for t in a.threads.split(",")]
    # TVM caps its pool at hardware_concurrency / 2 on x86 unless TVM_NUM_THREADS lifts it (threads.py)
    os.environ["TVM_NUM_THREADS"] = str(max(threads))
    config = tvm.get_global_func("runtime.config_threadpool")
    rng = np.random.default_rng(0)
    print(f"target {tt.spec}  vec {vec}  repeats {a.repeats}  load {os.getloadavg()[0]:.2f}")
    print(f"{'K':>6} {'N':>5} {'sparsity':>8} {'eff.dens':>8} "
          + " ".join(f"{f'dense/{t}t ms':>12} {f'sparse/{t}t ms':>13} {f'x{t}t':>6}" for t in threads))
    for shape in a.shapes.split(","):
        k, n = (int(d) for d in shape.split("x"))
        kb = max(d for d in range(1, vec + 1) if n % d == 0)
        x = rng.standard_normal((1, k)).astype(np.float32)
        w0 = rng.standard_normal((n, k)).astype(np.float32)
        epi = {"activation": "none", "alpha": 0.0, "beta": 0.0, "channels": n}
        dense_t, _ = C.fully_connected((1, k), 1, k, kb, epi)
        dense = build(dense_t, lambda s, kb=kb: schedule_fc(s, kb, vec), "dense", tgt)
        for sp in (float(s) for s in a.sparsities.split(",")):
            w = prune(w0, sp)
            vals, cols = S.ell_pack(w, kb)
            sparse_t, _ = S.sparse_fully_connected((1, k), 1, k, vals.shape[1], kb, epi)
            sparse = build(sparse_t, lambda s, kb=kb: S.schedule_sparse_fc(s, kb, vec), "sparse", tgt)
            out = np.zeros((1, n), np.float32)
            row = f"{k:>6} {n:>5} {sp:>8.2f} {S.effective_density(w):>8.3f} "
            for t in threads:
                config(1, t)
                td = timed(dense, "dense", [x, C.pack_fc_weight(w, kb), out], a.repeats)
                ts = timed(sparse, "sparse", [x, vals, cols, out], a.repeats)
                row += f"{td * 1e3:>12.3f} {ts * 1e3:>13.3f} {td / ts:>6.2f} "
            print(row, flush=True)


if __name__ == "__main__":
    main()
