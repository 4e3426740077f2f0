"""The pipeline's outputs: the sensitivity table (text, CSV, JSON), its plot, and the exploration summary.

The plot has one panel per variable (weights, activations, bias): the metric against the bit width,
one line per layer, with the float reference (and the budget line) drawn across. matplotlib runs
on its Agg backend, so no display is needed.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from pathlib import Path

from .config import VARIABLES
from .explore import Exploration
from .sensitivity import SensitivityRow


def _fmt(x: float) -> str:
    return "inf" if x == math.inf else f"{x:.2f}"


def table_text(rows: Sequence[SensitivityRow], kind: str) -> str:
    """A layer x variable table of the metric at each bit width (— where not measured)."""
    widths = sorted({r.bits for r in rows})
    cells = {(r.layer, r.variable, r.bits): r for r in rows}
    keys = list(dict.fromkeys((r.layer, r.variable) for r in rows))
    unit = "top-1 %" if kind == "accuracy" else "SQNR dB"
    head = f"{'layer':<16} {'variable':<12}" + "".join(f"{w:>8}" for w in widths)
    lines = [f"layer analysis ({unit}; one variable quantized, everything else float)", head, "-" * len(head)]
    for layer, var in keys:
        vals = "".join(f"{_fmt(cells[(layer, var, w)].metric) if (layer, var, w) in cells else '—':>8}"
                       for w in widths)
        lines.append(f"{layer:<16} {var:<12}{vals}")
    return "\n".join(lines)


def table_csv(rows: Sequence[SensitivityRow]) -> str:
    buf = io.StringIO()
    out = csv.writer(buf)
    out.writerow(["layer", "variable", "kind", "bits", "frac", "metric", "cost", "memory_bits"])
    for r in rows:
        out.writerow([r.layer, r.variable, r.spec.kind, r.bits, "" if r.spec.frac is None else r.spec.frac,
                      _fmt(r.metric), f"{r.cost:.6g}", r.memory_bits])
    return buf.getvalue()


def plot(rows: Sequence[SensitivityRow], kind: str, reference: float, path: str | Path,
         budget_line: float | None = None) -> Path:
    """Save the sensitivity plot as an image (PNG by the file suffix)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variables = [v for v in VARIABLES if any(r.variable == v for r in rows)]
    fig, axes = plt.subplots(1, len(variables), figsize=(4.5 * len(variables), 3.6), squeeze=False)
    for ax, var in zip(axes[0], variables, strict=True):
        for layer in dict.fromkeys(r.layer for r in rows):
            pts = sorted((r.bits, r.metric) for r in rows if r.layer == layer and r.variable == var)
            ys = [y if math.isfinite(y) else float("nan") for _, y in pts]
            ax.plot([b for b, _ in pts], ys, marker="o", label=layer)
        if math.isfinite(reference):
            ax.axhline(reference, color="k", linestyle="--", linewidth=1, label="float32")
        if budget_line is not None:
            ax.axhline(budget_line, color="r", linestyle=":", linewidth=1, label="budget")
        ax.set_title(var)
        ax.set_xlabel("bits")
        ax.set_ylabel("top-1 accuracy (%)" if kind == "accuracy" else "output SQNR (dB)")
        ax.grid(True, alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def exploration_text(result: Exploration, kind: str) -> str:
    m = result.memory
    wq, wf = m["weights"] + m["bias"], m["float_weights"] + m["float_bias"]
    unit = "%" if kind == "accuracy" else " dB"
    act = m["activations"] / max(m["float_activations"], 1)
    lines = [f"network space exploration: metric {_fmt(result.metric)}{unit}, budget "
             f"{'met' if result.met else 'NOT met'} ({result.evaluations} evaluations)",
             f"  weights+bias {wq / 8 / 1024:.2f} KiB = {wq / wf:.3f} of float32; activations "
             f"{m['activations'] / 8 / 1024:.2f} KiB = {act:.3f} of float32"]
    for layer, specs in result.config.layers.items():
        desc = ", ".join(f"{v} {s.kind}{s.bits}" + (f"[{s.bits - s.frac}.{s.frac}]" if s.frac is not None
                                                    and s.kind == "fixed" else "") for v, s in specs.items())
        lines.append(f"  {layer:<16} {desc}")
    return "\n".join(lines)


def write_report(out_dir: str | Path, rows: Sequence[SensitivityRow], result: Exploration, kind: str,
                 reference: float, budget_line: float | None) -> dict[str, Path]:
    """Write sensitivity.{txt,csv,json,png}, quant_config.json and exploration.json under `out_dir`."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    files = {"table": d / "sensitivity.txt", "csv": d / "sensitivity.csv", "json": d / "sensitivity.json",
             "plot": d / "sensitivity.png", "config": d / "quant_config.json", "summary": d / "exploration.json"}
    files["table"].write_text(table_text(rows, kind) + "\n")
    files["csv"].write_text(table_csv(rows))
    files["json"].write_text(json.dumps({"metric": kind, "float": reference, "rows": [
        {"layer": r.layer, "variable": r.variable, "spec": r.spec.to_dict(), "metric": r.metric, "cost": r.cost,
         "memory_bits": r.memory_bits} for r in rows]}, indent=1, default=str) + "\n")
    plot(rows, kind, reference, files["plot"], budget_line)
    result.config.save(files["config"])
    files["summary"].write_text(json.dumps({
        "metric": kind, "float": reference, "quantized": result.metric, "budget": result.budget, "met": result.met,
        "memory_bits": result.memory, "evaluations": result.evaluations, "history": result.history},
        indent=1, default=str) + "\n")
    return files
