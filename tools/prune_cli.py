"""`lpdc prune`: prune a model, report per-layer sparsity, weight bytes and chosen primitive, save it.

    lpdc prune zoo:alexnet --sparsity 0.9 --method magnitude -o pruned.onnx
    lpdc prune zoo:resnet18 --sparsity 0.5 --method channel --layers layer1.0/conv1,layer2.0/conv1

The chosen primitive comes from primitive selection (-O3) on the pruned model: measured costs by
default (kept in the cost cache), `--costs model` for the analytical model only (fast).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict


def cmd_prune(args: argparse.Namespace) -> int:
    from ..api import compile, save
    from ..passes.select.select_primitives import select_config
    from ..passes.sparsify import format_report, prune, sparsity_report
    from .cli import load_model

    graph = load_model(args)
    layers = [s for s in args.layers.split(",") if s] if args.layers else None
    pruned = prune(graph, args.sparsity, args.method, layers, scope=args.scope)
    choices: dict[str, str] = {}
    if not args.no_select:
        plans: list = []
        with select_config(costs=args.costs, on_plan=plans.append):
            compile(pruned, target="numpy", opt_level=3)
        choices = plans[0].choices if plans else {}
    rows = sparsity_report(pruned, choices)
    if args.json:
        print(json.dumps([asdict(r) for r in rows], indent=1))
    else:
        print(format_report(rows))
    if args.output:
        if str(args.output).endswith(".onnx"):
            from ..frontends.onnx_export import export_onnx

            export_onnx(pruned, args.output)
        else:
            save(pruned, args.output)
        if not args.json:
            print(f"wrote {args.output}")
    return 0


def add_prune_command(model_cmd) -> None:
    """Register `lpdc prune` (model_cmd adds the model argument and loading flags)."""
    p = model_cmd("prune", "prune a model (magnitude or channel) and report sparsity, bytes, primitives")
    p.add_argument("--sparsity", type=float, default=0.9, help="fraction of weights (magnitude) or of output "
                   "channels of each prunable conv (channel) to remove")
    p.add_argument("--method", default="magnitude", choices=("magnitude", "channel"))
    p.add_argument("--layers", help="comma-separated layer names (default: all prunable)")
    p.add_argument("--scope", default="layer", choices=("layer", "global"), help="magnitude threshold per layer "
                   "or one across layers")
    p.add_argument("--costs", default="auto", choices=("auto", "measure", "cache", "model"),
                   help="costs primitive selection uses for the report's primitive column")
    p.add_argument("--no-select", action="store_true", help="skip primitive selection (no primitive column)")
    p.add_argument("--json", action="store_true")
    p.add_argument("-o", "--output", help="FILE.onnx or an artifact directory")
    p.set_defaults(fn=cmd_prune)


__all__ = ["add_prune_command", "cmd_prune"]
