"""`lpdc analyze --faults retention` and `lpdc analyze --energy`: the hardware trade-off analyses.

    lpdc analyze MODEL --faults retention --p-retain 0.9..1.0 [--fault-model bit|word] [--data X.npz]
    lpdc analyze MODEL --energy [--energy-table T.json] [--latency-ms 5] [--bits 16]

--data is an .npz with `x` (images for the model's first input) and optionally `y` (labels): with
labels the curve is top-1 accuracy, without (or without --data: 16 seeded random inputs) it is top-1
agreement with the fault-free fixed-point model. Logic lives in faults.py and energy.py.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from ..errors import LpdcError, LpdcUnsupportedError
from ..ir import Graph

RANDOM_SAMPLES = 16


def add_hw_arguments(a: argparse.ArgumentParser) -> None:
    a.add_argument("--faults", choices=("retention",), help="accuracy under DRAM retention faults in the weights")
    a.add_argument("--p-retain", default="0.9..1.0", metavar="LO..HI[:STEP]|P,P,...",
                   help="retention probabilities to test (default 0.9..1.0, step 0.01)")
    a.add_argument("--fault-model", default="bit", choices=("bit", "word"),
                   help="bit: each stored bit kept with p_retain; word: one bit lost per word with 1 - p_retain")
    a.add_argument("--fault-bits", type=int, default=16, help="fixed-point width of the stored weights (default 16)")
    a.add_argument("--trials", type=int, default=3, help="random fault draws per probability (default 3)")
    a.add_argument("--data", metavar="FILE.npz", help="evaluation images `x` and optional labels `y`")
    a.add_argument("--energy", action="store_true", help="per-layer energy (45 nm table) and a DVFS comparison")
    a.add_argument("--energy-table", metavar="FILE.json", help="override per-operation energies (pJ) and the CPU model")
    a.add_argument("--latency-ms", type=float, help="latency target for the DVFS comparison")


def cmd_hw(args: argparse.Namespace, graph: Graph, quiet: bool) -> int:
    out: dict[str, Any] = {}
    text: list[str] = []
    if args.faults:
        out["faults"], part = _faults(args, graph, quiet)
        text.append(part)
    if args.energy:
        out["energy"], part = _energy(args, graph)
        text.append(part)
    print(json.dumps(out, indent=2) if args.json else "\n\n".join(text))
    if args.plot and not quiet and args.faults:
        print(f"wrote {args.plot}")
    return 0


def _faults(args: argparse.Namespace, graph: Graph, quiet: bool) -> tuple[dict[str, Any], str]:
    from dataclasses import asdict

    from .commands import tqdm_progress
    from .faults import format_curve, parse_p_retain, plot_curve, retention_curve

    p_values = parse_p_retain(args.p_retain)
    x, y = _evaluation_data(args, graph)
    tick = tqdm_progress(not quiet)("retention", len(p_values))
    curve = retention_curve(graph, p_values, x, y, trials=args.trials, bits=args.fault_bits, model=args.fault_model,
                            progress=tick)
    if args.plot:
        plot_curve(curve, args.plot)
    return asdict(curve), format_curve(curve)


def _evaluation_data(args: argparse.Namespace, graph: Graph) -> tuple[np.ndarray, np.ndarray | None]:
    if len(graph.inputs) != 1:
        raise LpdcUnsupportedError(f"--faults needs a model with one input, this one has {len(graph.inputs)}",
                                   where=f"graph '{graph.name}'")
    first = graph.inputs[0]
    if args.data is None:
        from ..ir import random_inputs

        batches = -(-RANDOM_SAMPLES // first.type.shape[0])
        return np.concatenate([random_inputs(graph, seed)[first.name] for seed in range(batches)]), None
    try:
        with np.load(args.data, allow_pickle=False) as f:
            x = f["x"]
            y = f["y"] if "y" in f.files else None
    except (OSError, ValueError, KeyError) as e:
        raise LpdcError(f"cannot read evaluation data (an .npz with x and optional y): {e}", where=args.data) from None
    if x.ndim != len(first.type.shape) or tuple(x.shape[1:]) != tuple(first.type.shape[1:]) or len(x) == 0:
        dims = ", ".join(map(str, first.type.shape[1:]))
        raise LpdcError(f"x has shape {list(x.shape)}, the model takes [N, {dims}]", where=args.data)
    if y is not None and len(y) != len(x):
        raise LpdcError(f"{len(x)} images but {len(y)} labels", where=args.data)
    return x, y


def _energy(args: argparse.Namespace, graph: Graph) -> tuple[dict[str, Any], str]:
    from .energy import dvfs, estimate, load_table, to_json
    from .energy_report import format_dvfs, format_energy

    table = load_table(args.energy_table)
    report = estimate(graph, args.bits, table)
    latency = None if args.latency_ms is None else args.latency_ms * 1e-3
    if latency is not None and not latency > 0:
        raise LpdcError(f"--latency-ms must be positive, got {args.latency_ms}")
    points = dvfs(report.ops, report.dram_bytes, table.cpu, latency)
    text = format_energy(report, skip_empty=not args.all_layers) + "\n\n" + format_dvfs(
        points, report.ops, report.dram_bytes, latency)
    return to_json(report, points, latency, table), text
