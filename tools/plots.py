"""Matplotlib figures for the analyzer and the benchmarks, written straight to files.

Figures are drawn on `matplotlib.figure.Figure` with the Agg canvas, never through pyplot, so no
global backend is switched and nothing needs a display.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import LpdcError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .analyze import ModelAnalysis
    from .bench import BenchReport

OP_KINDS = ("mul", "add", "div", "cmp", "other")
_MAX_TICK_LABELS = 60  # beyond this many bars, label every k-th so names stay legible


def _new_figure(rows: int, width: float) -> tuple[Figure, list[Axes]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, 3.6 * rows), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 1, squeeze=False)[:, 0]
    return fig, list(axes)


def _save(fig: Figure, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except (OSError, ValueError) as e:  # unwritable path or an unknown image format
        raise LpdcError(f"cannot write the plot: {e}", where=str(out)) from None
    return out


def _label_layers(ax: Axes, names: Sequence[str]) -> None:
    step = max(1, -(-len(names) // _MAX_TICK_LABELS))
    ticks = list(range(0, len(names), step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([names[i] for i in ticks], rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(names) - 0.4)


def _scale(top: float, unit: str) -> tuple[float, str]:
    """A divisor and its unit (KiB/MiB/GiB, or K/M/G) so that `top` reads between 1 and 1024."""
    base = 1024.0 if unit == "B" else 1000.0
    prefixes = ("Ki", "Mi", "Gi") if unit == "B" else ("K", "M", "G")
    scale, label = 1.0, unit
    for p in prefixes:
        if top / (scale * base) < 1:
            break
        scale, label = scale * base, f"{p}{unit}"
    return scale, label


def plot_analysis(a: ModelAnalysis, path: str | os.PathLike[str], *, all_layers: bool = False) -> Path:
    """Two panels like LPDNN's AlexNet figure: weight and activation memory per layer at the chosen
    bit width, and the operations per layer stacked by kind. Layers with neither parameters nor
    operations (reshape, flatten) are left out unless `all_layers`."""
    import numpy as np

    layers = [x for x in a.layers if all_layers or x.params or x.ops]
    if not layers:
        raise LpdcError("nothing to plot: the model has no layers with weights or operations", where=a.model)
    names = [x.name for x in layers]
    fig, (mem, ops) = _new_figure(2, min(28.0, max(8.0, 0.22 * len(layers) + 3)))
    idx = np.arange(len(layers))
    wb = np.array([x.weight_bytes for x in layers], dtype=float)
    ab = np.array([x.activation_bytes for x in layers], dtype=float)
    scale, unit = _scale(max(wb.max(), ab.max()), "B")
    mem.bar(idx - 0.2, wb / scale, 0.4, label="weights", color="#3b6fb6")
    mem.bar(idx + 0.2, ab / scale, 0.4, label="activations (output)", color="#e08a2c")
    t = a.total
    mem.set_title(f"{a.model}: memory per layer at {a.bits}-bit\nweights {_fmt(t.weight_bytes, 'B')}, "
                  f"peak live activations {_fmt(t.peak_live_bytes, 'B')}, arena {_fmt(t.arena_bytes, 'B')}",
                  fontsize=10)
    mem.set_ylim(0, max(wb.max(), ab.max()) / scale * 1.2 or 1)
    mem.set_ylabel(unit)
    mem.legend(loc="upper right")
    counts = {k: np.array([getattr(x, k) for x in layers], dtype=float) for k in OP_KINDS}
    scale, unit = _scale(float(sum(counts.values()).max()), "")
    bottom = np.zeros(len(layers))
    for kind in OP_KINDS:
        ops.bar(idx, counts[kind] / scale, 0.7, bottom=bottom, label=kind)
        bottom += counts[kind] / scale
    ops.set_ylim(0, bottom.max() * 1.2 or 1)  # headroom for the legend
    ops.set_title(f"operations per layer ({_fmt(t.macs, '')} MACs, {_fmt(t.ops, '')} operations in all)",
                  fontsize=10)
    ops.set_ylabel(f"{unit} operations" if unit else "operations")
    ops.legend(loc="upper right", ncols=len(OP_KINDS))
    for ax in (mem, ops):
        _label_layers(ax, names)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def _fmt(n: float, unit: str) -> str:
    from .analyze import human

    return human(n, unit)


def plot_bench(r: BenchReport, path: str | os.PathLike[str], *, top: int = 40) -> Path:
    """Per-layer median times (the `top` slowest), and a roofline: each layer's achieved GFLOP/s
    against its arithmetic intensity, under the host's measured GEMM peak and copy bandwidth."""
    import numpy as np

    fig, (times, roof) = _new_figure(2, 12.0)
    layers = sorted(r.layers, key=lambda x: -x.median_ms)[:top]
    if layers:
        times.bar(np.arange(len(layers)), [x.median_ms for x in layers], 0.7, color="#3b6fb6")
        _label_layers(times, [x.name for x in layers])
    times.set_ylabel("ms (median)")
    e2e = r.end_to_end
    times.set_title(f"{r.model} on {r.target}: end-to-end median {e2e.median_ms:.2f} ms "
                    f"(min {e2e.min_ms:.2f}, max {e2e.max_ms:.2f}); slowest layers")
    _draw_roofline(roof, r)
    return _save(fig, path)


def _draw_roofline(ax: Axes, r: BenchReport) -> None:
    import numpy as np

    pts = [(x.flops / x.bytes, x.gflops, x.op) for x in r.layers if x.flops > 0 and x.bytes > 0 and x.gflops > 0]
    ai = np.logspace(-2, 3, 200)
    peak, bw = r.gemm_peak_gflops, r.bandwidth_gbs
    if peak > 0 and bw > 0:
        ax.plot(ai, np.minimum(peak, ai * bw), color="black", lw=1.5,
                label=f"roofline: GEMM {peak:.1f} GFLOP/s, copy {bw:.1f} GB/s")
    elif peak > 0:
        ax.axhline(peak, color="black", lw=1.5, label=f"GEMM peak {peak:.1f} GFLOP/s")
    for op in sorted({p[2] for p in pts}):
        xs = [p[0] for p in pts if p[2] == op]
        ys = [p[1] for p in pts if p[2] == op]
        ax.scatter(xs, ys, s=14, label=op)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (operations / byte)")
    ax.set_ylabel("GFLOP/s achieved")
    ax.set_title("roofline of the host (numpy BLAS) and each layer")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right", fontsize=7, ncols=2)
