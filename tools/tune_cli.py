"""The autotuning commands: `lpdc tune`, `lpdc rpc tracker|server|status`, `lpdc tunedb`.

    lpdc tune MODEL [MODEL ...] --target numpy|x86|a72 [--tracker HOST:PORT --key KEY] [--trials N]
              [--ms-trials N [--ms-layers K]] [--budget-s S] [--db PATH] [-o PLAN.json] [--explain]
    lpdc rpc tracker [--host 127.0.0.1] [--port 9190] [--allow-remote]
    lpdc rpc server --tracker HOST:PORT --key KEY [--host 127.0.0.1] [--port 9090] [--allow-remote]
    lpdc rpc status --tracker HOST:PORT
    lpdc tunedb export|import|stats [--db PATH] [FILE]

`tune` measures every (layer, choice) the models' plans need that the database lacks (Ctrl-C or
a crash keeps every finished measurement; run it again to continue), with a progress bar, then
re-solves the selection with the measured costs and writes the plan as JSON. NumPy targets are
measured on this host; TVM targets on this host or, with --tracker/--key, on the boards
registered at an RPC tracker. `--ms-trials N` (TVM targets, this host only) adds a meta_schedule
search of N candidates for each of the K (`--ms-layers`, default 3) heaviest distinct layers to
the same campaign; the report sets each beside the best hand-scheduled kernel of its layer.
RPC endpoints started by `lpdc rpc` bind to 127.0.0.1 unless --allow-remote is given.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import LpdcError, LpdcTargetError

DB_ENV = "LPDC_AUTOTUNE_DB"
MS_LAYERS = 3  # --ms-layers default


def default_db_path() -> Path:
    """$LPDC_AUTOTUNE_DB, else $XDG_CACHE_HOME/lpdc/autotune.db, else ~/.cache/lpdc/autotune.db."""
    env = os.environ.get(DB_ENV)
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lpdc" / "autotune.db"


def _host_port(text: str, what: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise LpdcError(f"{what} must be HOST:PORT, got {text!r}")
    return host, int(port)


def _progress(args: argparse.Namespace, total: int) -> tuple[Callable[[Any], None], Callable[[], None]]:
    """A tqdm bar with ETA and per-status counts (stderr; off with --quiet or --json)."""
    if args.quiet or args.json or total == 0:
        return (lambda m: None), (lambda: None)
    from collections import Counter

    from tqdm import tqdm

    bar = tqdm(total=total, unit="meas", desc="tuning", file=sys.stderr, dynamic_ncols=True)
    counts: Counter = Counter()

    def update(m: Any) -> None:
        counts[m.status] += 1
        bar.set_postfix({k: counts[k] for k in ("ok", "failed", "timeout") if counts[k]}, refresh=False)
        bar.update(1)

    return update, bar.close


def _kernel_cache(args: argparse.Namespace) -> str | None:
    """TVM kernels (and meta_schedule traces) go beside an explicit --db; else the kinds' default."""
    return str(Path(args.db).with_suffix(".kernels")) if args.db else None


def _runner(args: argparse.Namespace):
    from ..autotune.measure import LocalRunner
    from ..autotune.rpc import RPCRunner

    if bool(args.tracker) != bool(args.key):
        raise LpdcError("--tracker and --key go together")
    cache = _kernel_cache(args)
    if args.tracker:
        if args.target == "numpy":
            raise LpdcError("the numpy target is measured on this host; --tracker needs a TVM target (x86, a72, a53)")
        return RPCRunner(_host_port(args.tracker, "--tracker"), args.key, args.target, args.device_model,
                         plugins=args.plugin, cache_dir=cache)
    from ..autotune.tvm_kind import DEVICE_TARGETS
    from ..backends.target import Target

    foreign = [d.name for d in Target(args.target).devices if DEVICE_TARGETS.get(d.name, ({}, ""))[1]]
    if foreign and not args.tvm_target:
        raise LpdcError(f"{', '.join(foreign)} kernels cannot run on this host: measure them on the board "
                        "(--tracker HOST:PORT --key KEY)")
    return LocalRunner(args.target, plugins=args.plugin, cache_dir=cache, threads=args.threads, clock=args.clock)


def _check_ms(args: argparse.Namespace) -> None:
    """Refuse meta_schedule options that cannot apply, before any model is loaded or measured."""
    from ..autotune.layers import ms_devices

    if args.ms_trials < 0:
        raise LpdcError(f"--ms-trials must be >= 0 (0: no meta_schedule), got {args.ms_trials}")
    if args.ms_trials == 0:
        if args.ms_layers is not None:
            raise LpdcError("--ms-layers needs --ms-trials N (N > 0)")
        return
    if args.ms_layers is not None and args.ms_layers < 1:
        raise LpdcError(f"--ms-layers must be >= 1, got {args.ms_layers}")
    if args.tracker or args.key:
        raise LpdcTargetError("meta_schedule tunes on this host only: --ms-trials cannot go with --tracker/--key")
    ms_devices(args.target, args.tvm_target or "")


def cmd_tune(args: argparse.Namespace) -> int:
    from ..autotune.campaign import (
        Campaign,
        CampaignOptions,
        explain_origins,
        ms_rows,
        plan_to_json,
        solve_plan,
        tvm_plan,
        write_json,
    )
    from ..autotune.db import Database, DatabaseCostSource
    from ..autotune.layers import model_work, ms_model_work, optimise
    from .cli import _model_spec, load_model

    _check_ms(args)
    specs = [args.model, *args.more_models]
    graphs = []
    for spec in specs:
        args.model = spec
        graphs.append(optimise(load_model(args)))
    work = model_work(graphs, args.target, args.trials)
    ms = ms_model_work(graphs, args.target, args.ms_layers or MS_LAYERS, args.ms_trials,
                       tvm_target=args.tvm_target or "") if args.ms_trials else []
    known = {w.key for w in work}
    work += [w for w in ms if w.key not in known]
    db_path = Path(args.db) if args.db else default_db_path()
    options = CampaignOptions(args.repeats, args.min_repeat_ms, args.timeout_s, args.budget_s, args.retry_failed,
                              args.tvm_target or "")
    with Database(db_path) as db:
        campaign = Campaign(db, _runner(args), options)
        update, close = _progress(args, len(campaign.pending(work)))
        try:
            report = campaign.run(work, update)
        finally:
            close()
        out: dict[str, Any] = {"models": [_model_spec(s) for s in specs], "target": args.target,
                               "database": str(db_path), "device": json.loads(campaign.device.key),
                               "campaign": report.to_json()}
        plans, origins = [], []
        if args.target == "numpy":
            source = DatabaseCostSource(db, campaign.device)
            for g in graphs:
                _, plan = solve_plan(g, db, campaign.device)
                plans.append(plan)
                origins.append(explain_origins(g, plan, source))
            out["plans"] = [plan_to_json(p, campaign.device, db_path) for p in plans]
        else:
            out["plans"] = [tvm_plan(graphs, db, campaign.device)]
        if ms:
            out["meta_schedule"] = ms_rows(db, campaign.device, ms)
    plan_path = write_json(args.output or f"{graphs[0].name}.plan.json", out)
    _report(args, out, plans, origins, plan_path)
    return 0 if report.remaining == 0 else 1


def _report(args: argparse.Namespace, out: dict[str, Any], plans: list[Any], origins: list[str],
            plan_path: Path) -> None:
    r = out["campaign"]
    if args.json:
        print(json.dumps({**out, "plan_file": str(plan_path)}, indent=2, default=str))
        return
    status = ", ".join(f"{v} {k}" for k, v in sorted(r["outcomes"].items())) or "nothing new"
    print(f"tuned {', '.join(out['models'])} for {out['target']}: {r['total']} measurements needed, "
          f"{r['already']} already in {out['database']}, measured {r['measured']} ({status}) in {r['seconds']:.1f} s")
    if r["remaining"]:
        why = "budget reached" if r["stopped_by_budget"] else "no worker left"
        print(f"  {r['remaining']} not measured ({why}); run the same command again to continue")
    _report_ms(args, out.get("meta_schedule", []))
    for plan, origin in zip(plans, origins, strict=True):
        print(f"  plan @{plan.graph}: predicted {plan.cost * 1e3:.3f} ms; costs " +
              ", ".join(f"{'measured' if k == 'cached' else k} {v}" for k, v in sorted(plan.origins.items())))
        if args.explain:
            print(plan.explain())
            print(origin)
    print(f"wrote {plan_path}")


def _report_ms(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """One line per meta_schedule row: its median beside the best hand-scheduled tvm kernel's."""
    for r in rows:
        names = ",".join(r["layers"][:3]) + (",..." if len(r["layers"]) > 3 else "")
        head = f"  meta_schedule {names} [{r['label']}] on {r['device']}, {r['trials']} trials:"
        if r["median_s"] is None:
            print(f"{head} {r['status']}" + (f" ({r['error'].splitlines()[0]})" if r["error"] else ""))
            continue
        best = r["tvm_best"]
        if best is None:
            vs = "no hand-scheduled tvm row to compare"
        else:
            cfg = ",".join(f"{k}={v}" for k, v in sorted(best["config"].items()) if k != "schedule")
            x = r["speedup"]
            vs = (f"best tvm {best['config'].get('schedule', '?')}[{cfg}] {best['median_s'] * 1e3:.3f} ms: "
                  + (f"meta_schedule {x:.2f}x faster" if x >= 1 else f"meta_schedule {1 / x:.2f}x slower"))
        print(f"{head} median {r['median_s'] * 1e3:.3f} ms; {vs}")
        if args.explain and r["found"]:
            f, where = r["found"], _kernel_cache(args) or Path(tempfile.gettempdir()) / "lpdc-tvm-kernels"
            print(f"    tuned trace sha256={f.get('trace_sha256')} in {Path(where) / str(f.get('trace_file'))}")


def cmd_rpc(args: argparse.Namespace) -> int:
    from ..autotune.rpc import check_bind, start_server, start_tracker

    if args.rpc_cmd == "status":
        host, port = _host_port(args.tracker, "--tracker")
        from tvm import rpc

        print(rpc.connect_tracker(host, port).text_summary())
        return 0
    check_bind(args.host, args.allow_remote)
    if args.rpc_cmd == "tracker":
        proc = start_tracker(args.host, args.port, args.allow_remote)
        print(f"RPC tracker on {args.host}:{proc.port} (Ctrl-C stops it)", flush=True)
    else:
        tracker = _host_port(args.tracker, "--tracker")
        proc = start_server(tracker, args.key, args.host, args.port, args.allow_remote)
        print(f"RPC server on {args.host}:{proc.port} under key {args.key!r} at tracker {args.tracker}"
              " (Ctrl-C stops it)", flush=True)
    # `kill PID` must take the tracker/server down too: it runs in its own process group.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        while proc.alive():
            time.sleep(1.0)
        return 1
    finally:
        proc.stop()


def cmd_tunedb(args: argparse.Namespace) -> int:
    from ..autotune.db import Database

    path = Path(args.db) if args.db else default_db_path()
    with Database(path) as db:
        if args.tunedb_cmd == "export":
            n = db.export_jsonl(args.file) if args.file != "-" else db.export_jsonl(sys.stdout)
            print(f"exported {n} measurements from {path}", file=sys.stderr)
        elif args.tunedb_cmd == "import":
            new, present = db.import_jsonl(sys.stdin if args.file == "-" else args.file)
            print(f"imported {new} measurements into {path} ({present} already there)")
        else:
            print(json.dumps({"database": str(path), "rows": db.count(), "ok": db.count("ok"),
                              "failed": db.count("failed"), "timeout": db.count("timeout"),
                              "devices": [json.loads(d.key) for d in db.devices()],
                              "integrity": db.integrity_check()}, indent=2))
    return 0


def add_tune_commands(sub: argparse._SubParsersAction,
                      model_cmd: Callable[[str, str], argparse.ArgumentParser]) -> None:
    """Register tune, rpc and tunedb on the `lpdc` parser."""
    t = model_cmd("tune", "measure layer costs (host or boards via an RPC tracker) and re-plan with them")
    t.add_argument("more_models", nargs="*", metavar="MODEL", help="more models (shared layers measured once)")
    t.add_argument("--target", default="numpy", help="numpy (this host), x86, a72, a53")
    t.add_argument("--tracker", metavar="HOST:PORT", help="RPC tracker of the boards")
    t.add_argument("--key", help="board key at the tracker (one worker per server under it)")
    t.add_argument("--device-model", default="", help="board CPU/GPU model, recorded in the device fingerprint")
    t.add_argument("--trials", type=int, default=4, help="TVM kernel configs tried per layer (default 4)")
    t.add_argument("--ms-trials", type=int, default=0, metavar="N",
                   help="TVM targets on this host: also tune the heaviest layers with meta_schedule, N candidates "
                        "each (default 0: off)")
    t.add_argument("--ms-layers", type=int, metavar="K",
                   help=f"how many distinct layers, heaviest (FLOPs) first, meta_schedule tunes (default {MS_LAYERS})")
    t.add_argument("--budget-s", type=float, help="stop starting measurements after this many seconds")
    t.add_argument("--db", help=f"measurement database (default ${DB_ENV} or ~/.cache/lpdc/autotune.db)")
    t.add_argument("-o", "--output", help="plan JSON (default MODEL.plan.json)")
    t.add_argument("--repeats", type=int, default=5, help="timed samples per measurement")
    t.add_argument("--min-repeat-ms", type=float, default=1.0, help="shortest sample (short kernels loop)")
    t.add_argument("--timeout-s", type=float, default=10.0, help="per-measurement limit (a hung kernel: timeout)")
    t.add_argument("--retry-failed", action="store_true", help="measure failed/timed-out entries again")
    t.add_argument("--threads", type=int, help="BLAS threads for host measurements (recorded in the device key)")
    t.add_argument("--clock", choices=("auto", "wall", "cpu"), default="auto",
                   help="host timings: process CPU time (robust on a shared machine; auto picks it with one "
                        "BLAS thread) or wall time")
    t.add_argument("--tvm-target", help="JSON TVM target dict overriding the device's (e.g. with mcpu)")
    t.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                   help="module the measurement workers import (extra primitives)")
    t.add_argument("--explain", action="store_true", help="print the plan with each cost's origin")
    t.add_argument("--json", action="store_true")
    t.set_defaults(fn=cmd_tune)

    r = sub.add_parser("rpc", help="run a TVM RPC tracker or server (loopback unless --allow-remote)")
    rs = r.add_subparsers(dest="rpc_cmd", required=True)
    for name in ("tracker", "server"):
        s = rs.add_parser(name)
        s.add_argument("--host", default="127.0.0.1", help="bind address (default loopback)")
        s.add_argument("--port", type=int, default=9190 if name == "tracker" else 9090)
        s.add_argument("--allow-remote", action="store_true", help="allow a non-loopback bind address")
        if name == "server":
            s.add_argument("--tracker", required=True, metavar="HOST:PORT")
            s.add_argument("--key", required=True)
    rs.add_parser("status").add_argument("--tracker", required=True, metavar="HOST:PORT")
    r.set_defaults(fn=cmd_rpc)

    d = sub.add_parser("tunedb", help="export, import or summarise the autotune database (JSON lines)")
    d.add_argument("tunedb_cmd", choices=("export", "import", "stats"))
    d.add_argument("file", nargs="?", default="-", help="JSON-lines file (export: - for stdout)")
    d.add_argument("--db", help=f"database (default ${DB_ENV} or ~/.cache/lpdc/autotune.db)")
    d.set_defaults(fn=cmd_tunedb)
