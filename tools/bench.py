"""Benchmarks at three granularities (LPDNN's section 2.4.4): BLAS kernels, layers, whole models.

- BLAS: NumPy matmul GFLOP/s on square GEMMs (the host's compute roof) and a large array copy
  (its memory roof); together they draw the roofline the per-layer points are judged against.
- Layers: every node's median/min/max wall time over repeated profiled runs, with its operation
  count and bytes touched (from the op registry), hence achieved GFLOP/s and arithmetic intensity.
- Primitives: each layer timed once per implementation in the NumPy primitive catalog, when the
  backend provides one (tools/bench_primitives.py; absent catalogs are reported, not fatal).
- End to end: median/min/max of whole runs after a warm-up run.

Library code reports progress through a `Progress` factory so the CLI can draw tqdm bars.
"""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LpdcError
from ..ir import Graph, Node

# progress(description, total) -> tick(): the CLI returns a tqdm bar's update; library default is silent.
Progress = Callable[[str, int], Callable[[], None]]


def no_progress(desc: str, total: int) -> Callable[[], None]:
    return lambda: None


@dataclass(frozen=True)
class Stats:
    """Summary of repeated wall-time measurements, in milliseconds."""

    median_ms: float
    min_ms: float
    max_ms: float
    runs: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Stats:
        a = np.asarray(seconds, dtype=float) * 1e3
        return cls(float(np.median(a)), float(a.min()), float(a.max()), len(a))


@dataclass(frozen=True)
class LayerTiming:
    """One node's time and work; `gflops` is the operations it did per nanosecond of median time."""

    name: str
    op: str
    primitive: str
    median_ms: float
    min_ms: float
    max_ms: float
    flops: int
    bytes: int

    @property
    def gflops(self) -> float:
        return self.flops / (self.median_ms * 1e6) if self.median_ms > 0 else 0.0


@dataclass(frozen=True)
class GemmPoint:
    """NumPy matmul of two n x n float32 matrices: 2 n^3 operations. `gflops` is from the fastest
    run: the roof is what the BLAS can reach, and on a shared machine the median mostly measures
    the neighbours."""

    n: int
    median_ms: float
    min_ms: float
    gflops: float
    threads: int = 0  # BLAS threads; 0 = the library's default


@dataclass(frozen=True)
class PrimitiveTiming:
    """One layer run with one primitive of the catalog (error set when that primitive failed)."""

    layer: str
    op: str
    primitive: str
    median_ms: float
    min_ms: float
    max_ms: float
    error: str = ""


@dataclass
class BenchReport:
    """Everything `lpdc bench` measured."""

    model: str
    target: str
    repeats: int
    end_to_end: Stats
    gemm: list[GemmPoint] = field(default_factory=list)
    bandwidth_gbs: float = 0.0
    layers: list[LayerTiming] = field(default_factory=list)
    primitives: list[PrimitiveTiming] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def gemm_peak_gflops(self) -> float:
        return max((g.gflops for g in self.gemm), default=0.0)


MIN_GEMM_SECONDS = 0.05


def measure_gemm(sizes: Sequence[int], repeats: int = 3, progress: Progress = no_progress,
                 threads: Sequence[int] = (0, 1)) -> list[GemmPoint]:
    """GFLOP/s of numpy matmul on square float32 GEMMs (the BLAS level of the benchmark), with the
    BLAS's default thread count (0) and with each other count in `threads`. One thread is measured
    too because a multi-threaded BLAS on a machine whose cores are busy stalls for scheduler ticks;
    the roof is the best of all. Thread limits need threadpoolctl; without it only the default runs."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threads = [t for t in threads if t == 0]
        threadpool_limits = None
    tick = progress("GEMM", len(sizes) * len(threads))
    points = []
    for t in threads:
        if t == 0 or threadpool_limits is None:
            points += _gemm_series(sizes, repeats, tick, t)
        else:
            with threadpool_limits(limits=t, user_api="blas"):
                points += _gemm_series(sizes, repeats, tick, t)
    return points


def _gemm_series(sizes: Sequence[int], repeats: int, tick: Callable[[], None], threads: int) -> list[GemmPoint]:
    rng = np.random.default_rng(0)
    points = []
    for n in sizes:
        a = rng.standard_normal((n, n), dtype=np.float32)
        b = rng.standard_normal((n, n), dtype=np.float32)
        a @ b  # warm-up: thread pool start, page faults
        secs: list[float] = []
        # At least `repeats` runs and MIN_GEMM_SECONDS of them: small GEMMs are over in microseconds
        # and a single preempted run on a busy machine would otherwise set the roof.
        while len(secs) < max(1, repeats) or (sum(secs) < MIN_GEMM_SECONDS and len(secs) < 1000):
            t0 = time.perf_counter()
            a @ b
            secs.append(time.perf_counter() - t0)
        s = Stats.of(secs)
        points.append(GemmPoint(n, s.median_ms, s.min_ms, 2.0 * n**3 / (s.min_ms * 1e-3) / 1e9, threads))
        tick()
    return points


def measure_bandwidth(mebibytes: int = 64, repeats: int = 3) -> float:
    """Copy bandwidth in GB/s (bytes read plus bytes written), the roofline's memory slope."""
    src = np.ones(mebibytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = math.inf
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def time_end_to_end(exe: Any, inputs: Mapping[str, np.ndarray], repeats: int,
                    progress: Progress = no_progress) -> Stats:
    """Whole-model wall time over `repeats` runs after one warm-up run."""
    exe.run(inputs)
    tick = progress("end to end", repeats)
    secs = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        exe.run(inputs)
        secs.append(time.perf_counter() - t0)
        tick()
    return Stats.of(secs)


def _work(node: Node) -> tuple[int, int]:
    ins = [v and v.type for v in node.inputs]
    outs = [v.type for v in node.outputs]
    return node.schema.flops(ins, outs, node.attrs).total, node.schema.bytes(ins, outs)


def time_layers(exe: Any, inputs: Mapping[str, np.ndarray], repeats: int,
                progress: Progress = no_progress) -> list[LayerTiming]:
    """Per-node times from `repeats` profiled runs (constants left out)."""
    tick = progress("layers", repeats)
    runs = []
    for _ in range(max(1, repeats)):
        runs.append(exe.profile(inputs, repeats=1)[1])
        tick()
    nodes = {n.name: n for n in exe.graph.nodes}
    out = []
    for i, t in enumerate(runs[0]):
        if t.op == "const":
            continue
        s = Stats.of([r[i].seconds for r in runs])
        # A fused kernel (named a+b) did all its nodes' work; bytes: theirs summed, an upper bound.
        work = [_work(nodes[n]) for n in (t.name, *t.fused) if n in nodes]
        flops, nbytes = sum(w[0] for w in work), sum(w[1] for w in work)
        out.append(LayerTiming("+".join((t.name, *t.fused)), t.op, t.primitive, s.median_ms, s.min_ms, s.max_ms,
                               flops, nbytes))
    return out


def to_json(r: BenchReport) -> dict[str, Any]:
    """A JSON-ready dict of the report (layers carry their achieved GFLOP/s)."""
    d = asdict(r)
    d["gemm_peak_gflops"] = r.gemm_peak_gflops
    for row, layer in zip(d["layers"], r.layers, strict=True):
        row["gflops"] = layer.gflops
    return d


CSV_FIELDS = ("kind", "name", "op", "primitive", "median_ms", "min_ms", "max_ms", "flops", "bytes", "gflops", "error")


def write_csv(r: BenchReport, path: str | os.PathLike[str]) -> Path:
    """One row per measurement; `kind` is end_to_end, gemm, layer or primitive."""
    rows: list[dict[str, Any]] = [{"kind": "end_to_end", "name": r.model, **_stat_cols(r.end_to_end)}]
    rows += [{"kind": "gemm", "name": f"sgemm_{g.n}" + (f"_t{g.threads}" if g.threads else ""), "op": "matmul",
              "median_ms": g.median_ms, "min_ms": g.min_ms, "gflops": g.gflops, "flops": 2 * g.n**3} for g in r.gemm]
    rows += [{"kind": "layer", "name": x.name, "op": x.op, "primitive": x.primitive, "median_ms": x.median_ms,
              "min_ms": x.min_ms, "max_ms": x.max_ms, "flops": x.flops, "bytes": x.bytes, "gflops": x.gflops}
             for x in r.layers]
    rows += [{"kind": "primitive", "name": p.layer, "op": p.op, "primitive": p.primitive, "median_ms": p.median_ms,
              "min_ms": p.min_ms, "max_ms": p.max_ms, "error": p.error} for p in r.primitives]
    out = Path(path)
    try:
        with open(out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=CSV_FIELDS)
            w.writeheader()
            w.writerows(rows)
    except OSError as e:
        raise LpdcError(f"cannot write CSV: {e}", where=str(out)) from None
    return out


def _stat_cols(s: Stats) -> dict[str, float]:
    return {"median_ms": s.median_ms, "min_ms": s.min_ms, "max_ms": s.max_ms}


def gemm_sizes(largest: int) -> list[int]:
    """Powers of two from 128 up to `largest` (at least one size)."""
    if largest < 1:
        raise LpdcError(f"GEMM size must be positive, got {largest}")
    sizes = [n for n in (128, 256, 512, 1024, 2048, 4096, 8192) if n < largest]
    return sizes[-3:] + [largest]


def benchmark(graph: Graph, inputs: Mapping[str, np.ndarray], *, target: str = "numpy",
              passes: Sequence[str] | None = None, repeats: int = 5, layers: bool = False, primitives: bool = False,
              gemm_size: int = 1024, progress: Progress = no_progress) -> BenchReport:
    """Compile `graph` for `target` (with `passes`, default the O2 pipeline) and measure it: BLAS
    first (a quiet thread pool gives the cleanest roof), then end to end, then layers/primitives."""
    from ..api import compile

    if repeats < 1:
        raise LpdcError(f"--repeats must be at least 1, got {repeats}")
    exe = compile(graph, target=target, passes=passes)
    gemm = measure_gemm(gemm_sizes(gemm_size), min(repeats, 3), progress)
    bandwidth = measure_bandwidth()
    report = BenchReport(graph.name, target, repeats, time_end_to_end(exe, inputs, repeats, progress), gemm,
                         bandwidth)
    if layers or primitives:
        report.layers = time_layers(exe, inputs, repeats, progress)
    if primitives:
        from .bench_primitives import time_primitives

        report.primitives, note = time_primitives(exe.graph, inputs, repeats, progress)
        if note:
            report.notes.append(note)
    return report
