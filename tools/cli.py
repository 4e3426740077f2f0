"""The `lpdc` command line.

Exit codes: 0 success; 1 an lpdc error (bad model, bad input, unsupported feature: the message
says which file/node); 2 a usage error (bad flags); 130 interrupted (Ctrl-C).
analyze, bench and viz live in tools/commands.py.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import IO, Any

import numpy as np

from ..errors import LpdcError
from ..ir import random_inputs

log = logging.getLogger("lpdc")
MODEL_HELP = "model: a .onnx, .prototxt, .lpir file, an artifact directory, zoo:NAME, or 'default'"


def _model_spec(spec: str) -> str:
    from .zoo import DEFAULT_MODEL

    return f"zoo:{DEFAULT_MODEL}" if spec == "default" else spec


def load_model(args: argparse.Namespace):
    from ..api import load

    options = {}
    if getattr(args, "weights", None):
        options["weights"] = args.weights
    if getattr(args, "random_weights", False):
        options["random_weights"] = True
    if getattr(args, "shape", None):
        options["shapes"] = {k: [int(d) for d in v.split(",")] for k, v in (s.split("=", 1) for s in args.shape)}
    return load(_model_spec(args.model), **options)


def _read_inputs(graph, specs: Sequence[str] | None, seed: int) -> dict[str, np.ndarray]:
    inputs = random_inputs(graph, seed)
    for spec in specs or ():
        name, _, path = spec.partition("=")
        if not path:
            raise LpdcError(f"--input takes NAME=FILE.npy, got {spec!r}")
        try:
            inputs[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise LpdcError(f"cannot read input array: {e}", where=path) from None
    return inputs


def progress_mode(args: argparse.Namespace) -> bool | None:
    """None: tqdm decides (bars only when stderr is a terminal, never in pipes or tests); False: never."""
    quiet = getattr(args, "no_progress", False) or getattr(args, "quiet", False) or getattr(args, "json", False)
    return False if quiet else None


def pass_bar(total: int, enabled: bool | None = None, file: IO[str] | None = None) -> tuple[Any, Any]:
    """A tqdm bar over `total` passes and the PassProgress instrument that feeds it (close the bar).
    `enabled`: None draws only on a terminal, True always (tests), False never."""
    from tqdm import tqdm

    from ..passes.instruments import PassProgress

    bar = tqdm(total=total, desc="passes", unit="pass", leave=False, file=file or sys.stderr, dynamic_ncols=True,
               disable=None if enabled is None else not enabled)

    def done(name: str) -> None:
        bar.update(1)
        if bar.n >= bar.total:  # clear it before the backend's own bars start
            bar.close()
    return PassProgress(on_done=done, on_start=bar.set_postfix_str), bar


def _compile(args: argparse.Namespace, graph):
    """api.compile with progress bars over the passes and, for TVM/OpenCL targets, the kernels."""
    from ..api import compile
    from ..backends.target import Target
    from ..passes.manager import pipeline
    from .commands import tqdm_progress

    enabled = progress_mode(args)
    instrument, bar = pass_bar(len(pipeline(args.opt_level)), enabled)
    options: dict[str, Any] = {"instruments": [instrument]}
    backends = Target(args.target).backends
    if backends == {"tvm"} or (backends == {"opencl"} and len(Target(args.target).devices) == 1):
        options["progress"] = tqdm_progress(enabled is not False)  # a bar per build phase, terminal only
    if getattr(args, "ms_trials", 0):  # compile --ms-trials: meta_schedule kernels (backends/tvm/ms_tuned.py)
        if backends != {"tvm"}:
            raise LpdcError(f"--ms-trials tunes TVM kernels; target {args.target!r} is not a TVM target (x86)")
        options.update(ms_trials=args.ms_trials, ms_layers=args.ms_layers)
    for flag in ("sparse", "variants"):  # compile --sparse / --variants: TVM kernel choices (variants.py)
        value = getattr(args, flag, None)
        if value is not None:
            if backends != {"tvm"}:
                raise LpdcError(f"--{flag} chooses TVM kernels; target {args.target!r} is not a TVM target")
            options[flag] = value
    try:
        return compile(graph, target=args.target, opt_level=args.opt_level, **options)
    finally:
        bar.close()


def _explain_tvm(exe) -> None:
    """The TVM build's measured choices: per conv its kernel variants, per pruned layer dense/sparse."""
    check = getattr(exe, "variant_check", {})
    if check.get("kept"):
        print(f"  kernel variants end to end: measured picks {check.get('measured_over_default', float('nan')):.3f} x "
              f"the default tiles' time -> the {check['kept']} tiles run")
    for name, r in exe.variant_choices.items():
        times = ", ".join(f"{label} {t * 1e3:.3f} ms" for label, t in sorted(r["times"].items(), key=lambda kv: kv[1]))
        unused = "" if r.get("used", True) else ", not used"
        print(f"  {name}: {r['picked']} ({r['how']}{unused}; {times})")
    for name, r in exe.sparse_choices.items():
        measured = ("" if r["dense_s"] is None
                    else f"; dense {r['dense_s'] * 1e3:.3f} ms, sparse {r['sparse_s'] * 1e3:.3f} ms")
        print(f"  {name}: {r['picked']} ({r['how']}, effective density {r['density']:.2f}{measured})")


def cmd_version(args: argparse.Namespace) -> int:
    from .. import __version__

    print(f"lpdc {__version__}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from ..api import load

    is_dir = bool(args.model) and not args.model.startswith("zoo:") and args.model != "default" and _is_dir(args.model)
    run_kw: dict = {}
    if is_dir and _is_hetero_artifact(args.model):  # a co-execution plan: on its board, or emulated here
        from ..backends.hetero.artifact import load_hetero_artifact

        exe = load_hetero_artifact(args.model, emulate=args.emulate)
        run_kw = {"emulate": args.emulate}
        args.target = exe.target_name + (" (emulated on this host)" if args.emulate else "")
    elif is_dir and _is_tvm_artifact(args.model):  # a compiled TVM library: run it as built
        from ..backends.tvm.artifact import load_tvm_artifact

        exe = load_tvm_artifact(args.model)
    else:
        graph = load(args.model) if is_dir else load_model(args)
        exe = _compile(args, graph)
        if getattr(exe, "emulated", False):
            run_kw = {"emulate": True}  # a board target compiled here can only run as an emulation
    inputs = _read_inputs(exe.graph, args.input, args.seed)
    if args.profile and not run_kw:
        outputs, timings = exe.profile(inputs, repeats=args.repeats)
    else:
        outputs, timings = exe.run(inputs, **run_kw), []
    report = {
        "model": args.model, "target": args.target, "nodes": len(exe.graph.nodes),
        "outputs": {k: {"shape": list(v.shape), "dtype": str(v.dtype), "mean": float(np.mean(v)),
                        "argmax": int(np.argmax(v))} for k, v in outputs.items()},
    }
    if timings:
        report["total_ms"] = sum(t.seconds for t in timings) * 1e3
        report["layers"] = [{"name": t.name, "op": t.op, "ms": t.seconds * 1e3,
                             **({"fused": list(t.fused)} if t.fused else {})} for t in timings if t.op != "const"]
    if args.save_outputs:
        np.savez(args.save_outputs, **outputs)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{args.model}: {report['nodes']} nodes on target {args.target}")
    for name, o in report["outputs"].items():
        print(f"  output {name}: shape {o['shape']} {o['dtype']}, mean {o['mean']:.6g}, argmax {o['argmax']}")
    for layer in report.get("layers", []):
        print(f"  {layer['name']:<24} {layer['op']:<18} {layer['ms']:8.3f} ms")
    if timings:
        print(f"  total {report['total_ms']:.3f} ms")
    return 0


def _is_hetero_artifact(path: str) -> bool:
    from ..backends.hetero.artifact import is_hetero_artifact

    return is_hetero_artifact(path)


def _is_tvm_artifact(path: str) -> bool:
    from ..backends.tvm.artifact import is_tvm_artifact

    return is_tvm_artifact(path)


def _is_dir(path: str) -> bool:
    from pathlib import Path

    return Path(path).is_dir()


def cmd_compile(args: argparse.Namespace) -> int:
    from ..api import save

    graph = load_model(args)
    if args.quant_config:  # a configuration `lpdc quantize --report` wrote
        from pathlib import Path

        from ..passes.quantize import quantize

        graph = quantize(graph, None, Path(args.quant_config))
    plans: list = []  # primitive-selection plans, collected for --explain
    if args.explain:
        from ..passes.select.select_primitives import select_config

        with select_config(on_plan=plans.append):
            exe = _compile(args, graph)
    else:
        exe = _compile(args, graph)
    print(f"compiled for {args.target}: {len(exe.graph.nodes)} nodes")
    for name, r in getattr(exe, "ms_kernels", {}).items():
        print(f"  meta_schedule {name:<28} default {r['default_s'] * 1e3:8.3f} ms  tuned {r['tuned_s'] * 1e3:8.3f} ms"
              f"  {'used' if r['used'] else 'not used'} ({r['trials']} trials{', cached' if r['cached'] else ''})")
    for r in getattr(exe, "pass_records", []):
        print(f"  pass {r.name:<24} {r.seconds * 1e3:7.2f} ms  {r.nodes_before} -> {r.nodes_after} nodes")
    for plan in plans:
        print(plan.explain())
    if args.explain and hasattr(exe, "explain"):  # a co-execution target: which layers go where
        print(exe.explain())
    elif args.explain and (getattr(exe, "variant_choices", None) or getattr(exe, "sparse_choices", None)):
        _explain_tvm(exe)
    elif args.explain and not plans:
        print("--explain: no primitive selection ran (select-primitives runs at -O3)")
    if args.output and hasattr(exe, "save"):  # a co-execution plan: the board's artifact
        exe.save(args.output, {"opt_level": args.opt_level})
        print(f"wrote {args.output}")
    elif args.output and hasattr(exe, "tvm_target"):  # TVM build: the artifact carries the library
        from ..backends.tvm.artifact import save_tvm_artifact

        save_tvm_artifact(exe, args.output, {"opt_level": args.opt_level})
        print(f"wrote {args.output}")
    elif args.output:
        save(exe.graph, args.output, {"target": args.target, "opt_level": args.opt_level})
        print(f"wrote {args.output}")
    return 0


def cmd_opt(args: argparse.Namespace) -> int:
    from ..passes.manager import PassManager

    graph = load_model(args)
    names = [p for p in (args.passes or "").split(",") if p]
    dump = ["after:all"] if args.print_after_all else []
    dump += [k.strip() for keys in (args.dump_ir or []) for k in keys.split(",") if k.strip()]
    instruments = []
    if args.check_numerics:  # run the reference after every pass; fail the pass that changes outputs
        from ..passes.instruments import NumericCheck

        instruments.append(NumericCheck())
    manager = PassManager(names, dump=dump, dump_sink=lambda key, text: print(f"// ---- IR {key}\n{text}"),
                          instruments=instruments)
    out = manager.run(graph)
    if not args.print_after_all:
        print(out, end="")
    return 0


def cmd_zoo(args: argparse.Namespace) -> int:
    from ..api import save
    from .zoo import MODELS, build

    if args.zoo_cmd == "list":
        for name in sorted(MODELS):
            print(name)
        return 0
    graph = build(args.name)
    if args.output.endswith(".onnx"):
        from ..frontends.onnx_export import export_onnx

        export_onnx(graph, args.output)
    else:
        save(graph, args.output)
    print(f"wrote {args.output}")
    return 0


EPILOG = """exit codes:
  0    success
  1    an lpdc error: bad model, input or option value, unsupported feature (the message names the file/node)
  2    a usage error (unknown or missing flags)
  130  interrupted (Ctrl-C)
--json prints only JSON on stdout; --quiet hides progress bars and notes (errors still go to stderr)."""


def _positive_int(text: str) -> int:
    """argparse type for the limit flags: 1000, 1e6 and 2**30 style values are all fine."""
    try:
        value = int(float(text)) if "**" not in text else int(text.split("**")[0]) ** int(text.split("**")[1])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lpdc", description="lpdc: a low-power DNN compiler.", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    p.add_argument("--quiet", action="store_true", help="only errors")
    limit = p.add_argument_group("resource limits (a model over one is refused before anything is allocated)")
    limit.add_argument("--max-elements", type=_positive_int, metavar="N", help="elements of any one tensor")
    limit.add_argument("--max-weight-bytes", type=_positive_int, metavar="N", help="bytes of all weights together")
    limit.add_argument("--max-nodes", type=_positive_int, metavar="N", help="nodes (layers) in one graph")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version").set_defaults(fn=cmd_version)

    def model_cmd(name: str, help: str):
        s = sub.add_parser(name, help=help)
        s.add_argument("model", help=MODEL_HELP)
        s.add_argument("--weights", help="Caffe .caffemodel for a .prototxt")
        s.add_argument("--random-weights", action="store_true", help="deterministic random weights (Caffe)")
        s.add_argument("--shape", action="append", metavar="NAME=D0,D1,...", help="input shape override")
        return s

    r = model_cmd("run", "compile a model and run it on inputs (random unless given)")
    r.add_argument("--target", default="numpy")
    r.add_argument("-O", "--opt-level", type=int, default=2, choices=range(4))
    r.add_argument("--input", action="append", metavar="NAME=FILE.npy")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--profile", action="store_true", help="per-layer wall times")
    r.add_argument("--repeats", type=int, default=3)
    r.add_argument("--json", action="store_true")
    r.add_argument("--save-outputs", metavar="FILE.npz")
    r.add_argument("--emulate", action="store_true",
                   help="run a board artifact's plan on this host (CPU side built here, OpenCL on the local device)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars (they only show on a terminal)")
    r.set_defaults(fn=cmd_run)

    c = model_cmd("compile", "optimise a model for a target and write an artifact")
    c.add_argument("--target", default="numpy")
    c.add_argument("-O", "--opt-level", type=int, default=2, choices=range(4))
    c.add_argument("-o", "--output", help="artifact directory")
    c.add_argument("--quant-config", metavar="FILE.json", help="quantize first with this configuration")
    c.add_argument("--explain", action="store_true",
                   help="print the primitive/layout plan: per layer the choice, its cost and the runner-up (-O3)")
    c.add_argument("--no-progress", action="store_true", help="no progress bars (they only show on a terminal)")
    c.add_argument("--ms-trials", type=int, default=0, metavar="N",
                   help="TVM x86: tune the heaviest conv/FC kernels with meta_schedule for N trials each, keep a "
                        "tuned kernel only where it is faster here (traces cached in $LPDC_MS_CACHE or "
                        "~/.cache/lpdc/ms_kernels)")
    c.add_argument("--ms-layers", type=_positive_int, default=3, metavar="K", help="how many kernels --ms-trials tunes")
    c.add_argument("--variants", choices=("default", "measure"),
                   help="TVM: time each conv's register tiles / Winograd here and keep the fastest (-O3 on x86 does)")
    c.add_argument("--sparse", choices=("auto", "measure", "on", "off"),
                   help="TVM: dense or sparse kernels for pruned layers (measure: time both, keep the faster)")
    c.set_defaults(fn=cmd_compile)

    o = model_cmd("opt", "run passes on a model and print the textual IR")
    o.add_argument("-p", "--passes", default="", help="comma-separated pass names")
    o.add_argument("--print-after-all", action="store_true")
    o.add_argument("--dump-ir", action="append", metavar="WHEN:PASS",
                   help="print the IR at before:PASS / after:PASS / after:all (comma-separated, repeatable)")
    o.add_argument("--check-numerics", action="store_true",
                   help="run the NumPy reference after every pass and fail the pass that changes the outputs")
    o.set_defaults(fn=cmd_opt)

    z = sub.add_parser("zoo", help="built-in models with deterministic random weights")
    zs = z.add_subparsers(dest="zoo_cmd", required=True)
    zs.add_parser("list")
    ze = zs.add_parser("export")
    ze.add_argument("name")
    ze.add_argument("-o", "--output", required=True, help="FILE.onnx or an artifact directory")
    z.set_defaults(fn=cmd_zoo)

    from .commands import add_tool_commands

    add_tool_commands(model_cmd)  # analyze, bench, viz
    from .tune_cli import add_tune_commands

    add_tune_commands(sub, model_cmd)  # tune, rpc, tunedb
    from .quantize_cli import add_quantize_command

    add_quantize_command(model_cmd)  # quantize
    from .prune_cli import add_prune_command

    add_prune_command(model_cmd)  # prune
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.ERROR if args.quiet else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        from ..ir.limits import override

        chosen = {k: getattr(args, k) for k in ("max_elements", "max_weight_bytes", "max_nodes")
                  if getattr(args, k, None) is not None}
        with override(**chosen):
            return args.fn(args)
    except LpdcError as e:
        print(f"lpdc: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lpdc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `lpdc ... | head` closed stdout early: nothing left to report
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit-time flush stays quiet
        return 1


if __name__ == "__main__":
    sys.exit(main())
