"""The `lpdc analyze`, `lpdc bench` and `lpdc viz` subcommands (parsers and runners).

Kept apart from cli.py so each tool's options sit next to the code that reads them. Progress
bars (tqdm, on stderr) live here and only here: library code reports progress through callbacks.
`--json` prints only JSON on stdout; `--quiet` silences progress bars and notes.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

ModelCmd = Callable[[str, str], argparse.ArgumentParser]
SELECT_PASS = "select-primitives"


def _quiet(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "quiet", False) or getattr(args, "json", False))


def tqdm_progress(enabled: bool):
    """A bench.Progress factory drawing one tqdm bar per phase (or nothing)."""

    def make(desc: str, total: int) -> Callable[[], None]:
        if not enabled or total <= 0:
            return lambda: None
        from tqdm import tqdm

        bar = tqdm(total=total, desc=desc, unit="step", leave=False, file=sys.stderr, dynamic_ncols=True, disable=None)

        def tick() -> None:
            bar.update(1)
            if bar.n >= bar.total:
                bar.close()
        return tick
    return make


@contextmanager
def steps(names: Sequence[str], enabled: bool) -> Iterator[Callable[[str], None]]:
    """A bar over a command's phases (load, analyze, plot, ...): `step(name)` starts the next."""
    if not enabled:
        yield lambda name: None
        return
    from tqdm import tqdm

    bar = tqdm(total=len(names), leave=False, file=sys.stderr, bar_format="{desc} {bar} {n_fmt}/{total_fmt}",
               disable=None)  # None: no bar when stderr is not a terminal (logs, CI)
    started = [False]

    def step(name: str) -> None:
        if started[0]:
            bar.update(1)
        started[0] = True
        bar.set_description_str(name)
    try:
        yield step
    finally:
        bar.close()


def _note(args: argparse.Namespace, text: str) -> None:
    if not _quiet(args):
        print(text)


def _load(args: argparse.Namespace):
    from .cli import load_model

    graph = load_model(args)
    if getattr(args, "opt_level", None) is not None or getattr(args, "passes", None):
        from ..passes.manager import PassManager, pipeline

        names = [p for p in args.passes.split(",") if p] if args.passes else pipeline(args.opt_level)
        graph = PassManager(names).run(graph.copy())
    return graph


# ---- analyze ------------------------------------------------------------------------------------
def cmd_analyze(args: argparse.Namespace) -> int:
    from .analyze import analyze, format_table, to_json

    if getattr(args, "faults", None) or getattr(args, "energy", False):  # tools/analyze_hw.py
        from .analyze_hw import cmd_hw

        with steps(["load"], not _quiet(args)) as step:
            step("load")
            graph = _load(args)
        return cmd_hw(args, graph, _quiet(args))
    with steps(["load", "analyze"] + (["plot"] if args.plot else []), not _quiet(args)) as step:
        step("load")
        graph = _load(args)
        step("analyze")
        result = analyze(graph, bits=args.bits)
        if args.plot:
            from .plots import plot_analysis

            step("plot")
            plot_analysis(result, args.plot, all_layers=args.all_layers)
    if args.json:
        print(json.dumps(to_json(result), indent=2))
        return 0
    print(format_table(result, skip_empty=not args.all_layers))
    if args.plot:
        _note(args, f"wrote {args.plot}")
    return 0


def add_analyze(model_cmd: ModelCmd) -> None:
    a = model_cmd("analyze", "per-layer and total parameters, memory and operation counts")
    a.add_argument("--bits", type=int, default=32, choices=(32, 16, 8, 1), help="bits per weight and activation")
    a.add_argument("--plot", metavar="FILE.png", help="bar plots of memory and operations per layer "
                   "(with --faults: the retention curve)")
    a.add_argument("--json", action="store_true", help="print JSON only (keys: model, bits, layers, total)")
    a.add_argument("--all-layers", action="store_true", help="also list layers without weights or operations")
    from .analyze_hw import add_hw_arguments

    add_hw_arguments(a)  # --faults, --p-retain, --energy, --energy-table, ...
    _opt_args(a, default_level=None)
    a.set_defaults(fn=cmd_analyze)


def _opt_args(p: argparse.ArgumentParser, default_level: int | None) -> None:
    p.add_argument("-O", "--opt-level", type=int, default=default_level, choices=range(4),
                   help="run this optimisation pipeline first" + ("" if default_level is None else
                                                                  f" (default {default_level})"))
    p.add_argument("-p", "--passes", default="", help="comma-separated passes to run first (instead of -O)")
    p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress or notes")


# ---- bench --------------------------------------------------------------------------------------
def cmd_bench(args: argparse.Namespace) -> int:
    from ..ir import random_inputs
    from . import bench
    from .cli import load_model

    with steps(["load"], not _quiet(args)) as step:
        step("load")
        graph = load_model(args)
    report = bench.benchmark(graph, random_inputs(graph, args.seed), target=args.target, passes=_pass_list(args),
                             repeats=args.repeats, layers=args.layers or bool(args.plot), primitives=args.primitives,
                             gemm_size=args.gemm_size, progress=tqdm_progress(not _quiet(args)))
    return _bench_output(args, report)


def _pass_list(args: argparse.Namespace) -> list[str] | None:
    if args.passes:
        return [p for p in args.passes.split(",") if p]
    from ..passes.manager import pipeline

    return pipeline(args.opt_level)


def _bench_output(args: argparse.Namespace, report: Any) -> int:
    from . import bench

    if args.csv:
        bench.write_csv(report, args.csv)
    if args.plot:
        from .plots import plot_bench

        plot_bench(report, args.plot)
    if args.json:
        print(json.dumps(_finite(bench.to_json(report)), indent=2, allow_nan=False))
        return 0
    print(format_bench(report, show_layers=args.layers))
    for path in (args.csv, args.plot):
        if path:
            _note(args, f"wrote {path}")
    for note in report.notes:
        _note(args, f"note: {note}")
    return 0


def _finite(obj: Any) -> Any:
    """JSON has no NaN: a failed primitive's missing time becomes null."""
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def format_bench(r: Any, show_layers: bool) -> str:
    """The terminal summary: end to end, BLAS roof, then layers and primitives when measured."""
    e = r.end_to_end
    lines = [f"{r.model} on {r.target}: end to end median {e.median_ms:.3f} ms, min {e.min_ms:.3f}, "
             f"max {e.max_ms:.3f} ({e.runs} runs)"]
    lines += [f"  sgemm {g.n:>5} ({_threads(g.threads)}): median {g.median_ms:9.3f} ms, min {g.min_ms:9.3f} ms, "
              f"{g.gflops:8.2f} GFLOP/s" for g in r.gemm]
    lines.append(f"  roofline: GEMM peak {r.gemm_peak_gflops:.2f} GFLOP/s, copy bandwidth {r.bandwidth_gbs:.2f} GB/s")
    if show_layers and r.layers:
        lines.append(f"  {'layer':<24} {'op':<16} {'primitive':<12} {'median ms':>10} {'min':>9} {'max':>9} "
                     f"{'GFLOP/s':>8}")
        lines += [f"  {x.name:<24} {x.op:<16} {x.primitive or '-':<12} {x.median_ms:10.3f} {x.min_ms:9.3f} "
                  f"{x.max_ms:9.3f} {x.gflops:8.2f}" for x in r.layers]
    if r.primitives:
        lines.append(f"  {'layer':<24} {'primitive':<20} {'median ms':>10}")
        lines += [f"  {p.layer:<24} {p.primitive:<20} {p.median_ms:10.3f}" + (f"  ({p.error})" if p.error else "")
                  for p in r.primitives]
    return "\n".join(lines)


def _threads(n: int) -> str:
    return "default threads" if n == 0 else f"{n} thread" + ("s" if n > 1 else "")


def add_bench(model_cmd: ModelCmd) -> None:
    b = model_cmd("bench", "benchmark BLAS GEMM, each layer and the whole model")
    b.add_argument("--target", default="numpy")
    b.add_argument("--layers", action="store_true", help="per-layer median/min/max times")
    b.add_argument("--primitives", action="store_true", help="per-layer time of every primitive in the catalog")
    b.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (default 5)")
    b.add_argument("--gemm-size", type=int, default=1024, help="largest square GEMM for the BLAS roof (default 1024)")
    b.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    b.add_argument("--json", action="store_true", help="print JSON only")
    b.add_argument("--csv", metavar="FILE.csv", help="write every measurement as CSV")
    b.add_argument("--plot", metavar="FILE.png", help="per-layer times and roofline (measures layers)")
    _opt_args(b, default_level=2)
    b.set_defaults(fn=cmd_bench)


# ---- viz ----------------------------------------------------------------------------------------
def cmd_viz(args: argparse.Namespace) -> int:
    from .cli import load_model
    from .viz import DotMissingWarning, render

    with steps(["load", "compile" if args.plan else "prepare", "render"], not _quiet(args)) as step:
        step("load")
        graph = load_model(args)
        step("compile" if args.plan else "prepare")
        memory = None
        if args.plan:
            from ..passes.plan_memory import plan_memory

            graph = _planned(graph, args)
            memory = plan_memory(graph)
        elif args.passes:
            graph = _load_passes(graph, args.passes)
        step("render")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DotMissingWarning)
            written = render(graph, args.output, strict=args.strict, plan=args.plan, memory=memory,
                             show_consts=args.consts)
    for w in caught:
        print(f"lpdc: warning: {w.message}", file=sys.stderr)
    _note(args, f"wrote {written}")
    return 0


def _planned(graph, args: argparse.Namespace):
    """Compile with the pipeline plus primitive selection (when this build has it), priced by the
    analytical cost model so drawing a plan never waits for measurements."""
    import contextlib

    from ..api import compile
    from ..errors import LpdcPassError
    from ..passes.manager import get_pass

    names = _pass_list(args) or []
    context: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    try:
        get_pass(SELECT_PASS)
        from ..passes.select.select_primitives import select_config

        names += [] if SELECT_PASS in names else [SELECT_PASS]
        context = select_config(costs=args.costs)
    except (LpdcPassError, ImportError) as e:
        _note(args, f"note: no primitive selection in this build ({e}); drawing the compiled graph")
    with context:
        return compile(graph, target=args.target, passes=names).graph


def _load_passes(graph, passes: str):
    from ..passes.manager import PassManager

    return PassManager([p for p in passes.split(",") if p]).run(graph.copy())


def add_viz(model_cmd: ModelCmd) -> None:
    v = model_cmd("viz", "render the graph with graphviz (.svg/.png/.pdf, or .dot source)")
    v.add_argument("-o", "--output", required=True, metavar="FILE", help="graph.svg, .png, .pdf, or .dot")
    v.add_argument("--plan", action="store_true",
                   help="compile for --target with primitive selection first; colour by device, show "
                        "primitive/layout, layout conversions and arena offsets")
    v.add_argument("--target", default="numpy")
    v.add_argument("--costs", default="model", choices=("model", "auto", "measure", "cache"),
                   help="how --plan prices primitives: analytical model (default, instant) or measurements")
    v.add_argument("--consts", action="store_true", help="draw constant (weight) nodes")
    v.add_argument("--strict", action="store_true", help="fail (exit 1) instead of writing .dot when dot is missing")
    _opt_args(v, default_level=2)
    v.set_defaults(fn=cmd_viz)


def add_tool_commands(model_cmd: ModelCmd) -> None:
    add_analyze(model_cmd)
    add_bench(model_cmd)
    add_viz(model_cmd)
