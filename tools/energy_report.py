"""Terminal tables of the energy estimate and the DVFS comparison (`lpdc analyze --energy`)."""

from __future__ import annotations

from .analyze import human
from .energy import DvfsPoint, EnergyReport, best_point


def format_energy(r: EnergyReport, skip_empty: bool = True) -> str:
    head = ("layer", "op", "MACs", "compute uJ", "weights uJ", "activ. uJ", "total uJ", "share")
    total = r.total() or 1.0
    rows = [head]
    for x in r.layers:
        if skip_empty and x.total_pj == 0:
            continue
        rows.append((x.name, x.op, human(x.macs), f"{x.compute_pj / 1e6:.4f}", f"{x.weights_pj / 1e6:.4f}",
                     f"{x.activations_pj / 1e6:.4f}", f"{x.total_pj / 1e6:.4f}", f"{100 * x.total_pj / total:.1f}%"))
    rows.append(("TOTAL", "", human(sum(x.macs for x in r.layers)), f"{r.total('compute_pj') / 1e6:.4f}",
                 f"{r.total('weights_pj') / 1e6:.4f}", f"{r.total('activations_pj') / 1e6:.4f}",
                 f"{r.total() / 1e6:.4f}", "100.0%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
             for row in rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    lines.append(f"energy per inference of {r.model} at {r.bits}-bit (45 nm table; weights in DRAM, activations "
                 f"in {r.activations_in.upper()}): {r.total() / 1e6:.4f} uJ")
    return "\n".join(lines)


def format_dvfs(points: list[DvfsPoint], ops: int, dram_bytes: int, latency_s: float | None) -> str:
    lines = [f"DVFS (P = eta*alpha*C*f*V^2 + P_leak): {human(ops)} operations, {human(dram_bytes, 'B')} DRAM traffic"
             + (f", latency target {latency_s * 1e3:.3f} ms" if latency_s is not None else ""),
             f"{'MHz':>6}  {'V':>6}  {'time ms':>9}  {'power W':>8}  {'energy mJ':>10}  {'to target mJ':>12}"]
    for p in points:
        at = "misses" if latency_s is not None and p.energy_deadline_j is None else (
            "-" if p.energy_deadline_j is None else f"{p.energy_deadline_j * 1e3:.4f}")
        lines.append(f"{p.freq_mhz:6.0f}  {p.volt:6.3f}  {p.time_s * 1e3:9.4f}  {p.power_w:8.3f}  "
                     f"{p.energy_j * 1e3:10.4f}  {at:>12}")
    lowest = min(points, key=lambda p: p.energy_j)
    lines.append(f"least energy per inference: {lowest.freq_mhz:.0f} MHz ({lowest.energy_j * 1e3:.4f} mJ)")
    if latency_s is not None:
        best = best_point(points)
        lines.append(f"least energy meeting {latency_s * 1e3:.3f} ms: " + (
            f"{best.freq_mhz:.0f} MHz ({best.energy_deadline_j * 1e3:.4f} mJ)" if best else "no operating point"))
    return "\n".join(lines)
