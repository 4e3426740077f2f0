"""`lpdc quantize`: quantize a model with a scheme, or run the sensitivity-analysis pipeline (--report).

    lpdc quantize digits --scheme int8                       # the labelled digits CNN: test accuracy
    lpdc quantize zoo:tiny_cnn --calib 8 --scheme fixed8 -o q  # random inputs: output SQNR; saves q/
    lpdc quantize digits --calib 600 --scheme fixed --report -o rep --budget 1
        -> rep/sensitivity.{txt,csv,json,png}, rep/quant_config.json (for `lpdc compile --quant-config`),
           rep/exploration.json, and (digits) rep/model, the float model that configuration applies to

MODEL `digits` is tools/digits_cnn.py's CNN with its labelled splits (calibration on training
images, exploration on the validation split, the final report on the held-out test split); any
other model gets deterministic random inputs and is judged by output SQNR against float.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LpdcError

DEFAULT_SQNR_BUDGET = 30.0  # dB, when there are no labels


@dataclass
class Task:
    """A model with its calibration feeds, evaluation feeds, labels (or None) and final-report data."""

    graph: object
    calib: list[dict[str, np.ndarray]]
    evals: list[dict[str, np.ndarray]]
    labels: np.ndarray | None
    test: tuple[list[dict[str, np.ndarray]], np.ndarray] | None = None


def feeds_from(x: np.ndarray, name: str, batch: int) -> list[dict[str, np.ndarray]]:
    """Chunk samples into feeds of the graph's batch size (the last padded with its last sample)."""
    feeds = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        if len(chunk) < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch - len(chunk), axis=0)])
        feeds.append({name: chunk})
    return feeds


def load_task(args: argparse.Namespace) -> Task:
    if args.model == "digits":
        from .digits_cnn import digits_split, train_digits_cnn

        graph, _ = train_digits_cnn(args.seed)
        d = digits_split(args.seed)
        name, batch = graph.inputs[0].name, graph.inputs[0].type.shape[0]
        calib = feeds_from(d.x_train[:args.calib], name, batch)
        return Task(graph, calib, feeds_from(d.x_val, name, batch), d.y_val,
                    (feeds_from(d.x_test, name, batch), d.y_test))
    from ..ir import random_inputs
    from .cli import load_model

    graph = load_model(args)
    calib = [random_inputs(graph, seed) for seed in range(args.calib)]
    evals = [random_inputs(graph, 10_000 + seed) for seed in range(args.eval)]
    return Task(graph, calib, evals, None)


def _bar(args: argparse.Namespace, total: int | None, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=args.quiet or args.no_progress, leave=False)


def _judge(task: Task, q, feeds, labels) -> str:
    from ..passes.quantize.metrics import run_outputs, sqnr_db

    ref, out = run_outputs(task.graph, feeds), run_outputs(q, feeds)
    if labels is not None:
        n = len(labels)
        acc = [100 * float(np.mean(o[:n].reshape(n, -1).argmax(1) == labels)) for o in (ref, out)]
        return f"top-1 {acc[1]:.2f}% (float {acc[0]:.2f}%, {acc[1] - acc[0]:+.2f} points) on {n} held-out images"
    agree = float(np.mean(ref.reshape(len(ref), -1).argmax(1) == out.reshape(len(out), -1).argmax(1)))
    return f"output SQNR {sqnr_db(ref, out):.2f} dB, top-1 agreement with float {100 * agree:.1f}%"


def _memory_line(graph, scheme: str) -> str:
    from ..passes.quantize.config import resolve
    from ..passes.quantize.metrics import memory

    m = memory(graph, resolve(scheme))
    wq, wf = m["weights"] + m["bias"], m["float_weights"] + m["float_bias"]
    return (f"weights+bias of the quantized layers: {wq / 8192:.2f} KiB packed, {wf / max(wq, 1):.2f}x smaller "
            f"than float32")


def cmd_quantize(args: argparse.Namespace) -> int:
    if args.calib < 1 or args.eval < 1:
        raise LpdcError("--calib and --eval need at least one sample")
    task = load_task(args)
    if args.report:
        return _pipeline(args, task)
    from dataclasses import replace

    from ..api import save
    from ..passes.quantize import quantize
    from ..passes.quantize.config import resolve

    config = resolve(args.scheme)
    if args.method is not None:
        config = replace(config, calibration=args.method)
    q = quantize(task.graph, task.calib, config)
    feeds, labels = task.test if task.test is not None else (task.evals, None)
    print(f"{args.model} quantized with {args.scheme}: {_judge(task, q, feeds, labels)}")
    print(_memory_line(task.graph, args.scheme))
    if args.output:
        save(q, args.output, {"quantized": str(args.scheme)})
        print(f"wrote {args.output}")
    return 0


def _pipeline(args: argparse.Namespace, task: Task) -> int:
    from ..api import save
    from ..passes.quantize import calibrate, quantize_with
    from ..passes.quantize.explore import explore
    from ..passes.quantize.metrics import Evaluator
    from ..passes.quantize.plan import calibration_values
    from ..passes.quantize.report import exploration_text, table_text, write_report
    from ..passes.quantize.sensitivity import analysis_steps, layer_analysis

    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    variables = [v.strip() for v in args.variables.split(",") if v.strip()]
    cal = calibrate(task.graph, task.calib, calibration_values(task.graph))
    ev = Evaluator(task.graph, task.evals, cal, task.labels)
    method = args.method or "minmax"
    budget = args.budget if args.budget is not None else (1.0 if task.labels is not None else DEFAULT_SQNR_BUDGET)
    with _bar(args, analysis_steps(ev, args.scheme, widths, variables), "layer analysis") as bar:
        rows = layer_analysis(ev, args.scheme, widths, variables, method, progress=lambda _: bar.update())
    with _bar(args, None, "exploration") as bar:
        result = explore(ev, rows, budget, method, progress=lambda _: bar.update())
    out = Path(args.output or "quant_report")
    line = ev.float_metric - budget if task.labels is not None else budget
    files = write_report(out, rows, result, ev.kind, ev.float_metric, line if math.isfinite(line) else None)
    print(table_text(rows, ev.kind))
    print(exploration_text(result, ev.kind))
    if task.test is not None:
        q = quantize_with(task.graph, result.config, cal)
        print(f"mixed configuration on the test split: {_judge(task, q, *task.test)}")
        save(task.graph, out / "model", {"note": "float model the quantization configuration applies to"})
    print(f"wrote {', '.join(str(p) for p in files.values())}")
    return 0


def add_quantize_command(model_cmd) -> None:
    """Register `lpdc quantize` (model_cmd is the CLI's helper that adds a subcommand taking MODEL)."""
    q = model_cmd("quantize", "quantize a model (a scheme), or run the sensitivity-analysis pipeline (--report)")
    q.description = ("Quantize MODEL with a scheme, or with --report run layer analysis and network space "
                     "exploration. MODEL may also be 'digits', the labelled digits CNN (accuracy instead of "
                     "output SQNR).")
    q.add_argument("--scheme", default="int8",
                   help="int8/intN, fixedN, kmeansN, or a configuration .json; with --report the technique: "
                        "fixed, kmeans or int")
    q.add_argument("--calib", type=int, default=8, metavar="N", help="calibration samples (default 8)")
    q.add_argument("--eval", type=int, default=8, metavar="N", help="random evaluation inputs (no labels)")
    q.add_argument("--method", choices=["minmax", "ema", "percentile", "entropy"],
                   help="activation range calibration (default: the configuration's, else minmax)")
    q.add_argument("--report", action="store_true", help="layer analysis + network space exploration")
    q.add_argument("--budget", type=float, help="max accuracy drop in points (labels; default 1) or min output "
                                                f"SQNR in dB (default {DEFAULT_SQNR_BUDGET:g})")
    q.add_argument("--widths", default="2,3,4,5,6,8,12,16", help="bit widths the layer analysis tries")
    q.add_argument("--variables", default="weights,activations,bias")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--no-progress", action="store_true", help="no progress bars")
    q.add_argument("-o", "--output", help="quantized artifact directory (or the report directory with --report)")
    q.set_defaults(fn=cmd_quantize)
