"""meta_schedule as a second source of kernels for the layers that dominate (issue #7).

`compile_tvm(..., ms_trials=N, ms_layers=K)` tunes the K conv / FC kernels of the plan with the
most FLOPs (per call x calls) with meta_schedule: the kernel's own PrimFunc (the backend's compute,
fused epilogue and packed weight layout included), so the tuned schedule is a drop-in replacement
for the project's template. Both are then timed here side by side and the tuned one is used only
where it ran faster: a few trials often lose to the hand template, and a loss must cost nothing.

Tuning runs in this process (an in-process builder and runner): meta_schedule's local builder and
runner each start a worker process that imports TVM, ~20 s apiece on the shared 2-core host, which
is longer than a few trials. The best trace is cached as JSON in `ms_cache` (default
$LPDC_MS_CACHE, else $XDG_CACHE_HOME/lpdc/ms_kernels, else ~/.cache/lpdc/ms_kernels), one file per
sha256(PrimFunc script, target, TVM version), so a later compile replays it (Trace.apply_json_to_schedule)
instead of tuning; a cached trace from fewer trials than asked for is tuned again.

Each decision is recorded (TvmExecutable.ms_kernels): kernel name -> {"nodes", "flops" (total),
"default_s", "tuned_s" (median seconds here), "used", "trials", "cached", "trace_file"}.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import statistics
import tempfile
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import LpdcTargetError
from .build import Plan, Progress
from .lower import Lowered
from .ms_in_process import in_process
from .target import TvmTarget

log = logging.getLogger(__name__)

CACHE_ENV = "LPDC_MS_CACHE"
KINDS = ("conv", "fc")  # schedule kinds worth tuning: the GEMM-like kernels
ROUNDS = 3  # default/tuned timings alternate this many times (drift on a shared host hits both)
REPEATS = 3  # time_evaluator repeats per round; each repeat runs at least MIN_REPEAT_MS
MIN_REPEAT_MS = 10
# From this many trials on, an evolutionary search mutates the best measured candidates; below, candidates
# are drawn at random from the design space (replay-trace). The population is small: the default 512
# costs ~20 s of sampling per round on 2 cores, and without xgboost (optional) the cost model ranks at
# random anyway. ResNet-18 layer1 3x3 conv, 32 trials (one run each, shared 2-core host): replay-trace
# 2.5x slower than the template, this search 1.1x, the default population 1.14x in twice the time.
EVOLVE_MIN_TRIALS = 16


def ms_cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """`override`, else $LPDC_MS_CACHE, else $XDG_CACHE_HOME/lpdc/ms_kernels, else ~/.cache/lpdc/ms_kernels."""
    if override:
        return Path(override)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lpdc" / "ms_kernels"


def kernel_flops(low: Lowered) -> int:
    """FLOPs of one call: 2 x output elements x reduction extent of every reducing TE stage."""
    total, seen, todo = 0, set(), [low.tensors[-1]]
    while todo:
        t = todo.pop()
        if t.op in seen:
            continue
        seen.add(t.op)
        axes = getattr(t.op, "reduce_axis", None) or []
        if axes:
            total += 2 * int(np.prod([int(d) for d in t.shape])) * int(np.prod([int(r.dom.extent) for r in axes]))
        todo.extend(t.op.input_tensors)
    return total


def heaviest(plan: Plan, layers: int) -> list[tuple[str, int, list[str]]]:
    """(kernel name, total FLOPs, node names) of the `layers` conv / FC kernels with the most FLOPs."""
    nodes: dict[str, list[str]] = {}
    for s in plan.steps:
        if s.func is not None:
            nodes.setdefault(s.func, []).append(s.node.name)
    ranked = [(name, kernel_flops(low) * len(nodes.get(name, [])), nodes.get(name, []))
              for name, low in plan.kernels.items() if low.schedule in KINDS]
    return sorted(ranked, key=lambda r: -r[1])[:max(0, layers)]


def tune_plan(plan: Plan, tt: TvmTarget, trials: int, layers: int = 3, cache: str | os.PathLike[str] | None = None,
              progress: Progress | None = None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """(kernel name -> tuned PrimFunc for build_module, kernel name -> record) for the heaviest kernels.
    `progress` (build.py's) ticks once per kernel tuned or replayed."""
    if not tt.runs_here or tt.kind != "cpu":
        raise LpdcTargetError(f"ms_trials tunes and times kernels on this host; target {tt.name!r} builds for "
                              "another machine", where=tt.name)
    import tvm
    from tvm import te

    from .threads import ensure_threads

    ensure_threads()  # tune and time with the threads the executable runs with
    cache_dir = ms_cache_dir(cache)
    tuned: dict[str, Any] = {}
    records: dict[str, dict[str, Any]] = {}
    kernels = heaviest(plan, layers)
    tick = progress("meta_schedule kernels", len(kernels)) if progress is not None and kernels else None
    for name, flops, nodes in kernels:
        low = plan.kernels[name]
        f = te.create_prim_func(low.tensors).with_attr("global_symbol", "main")
        path = cache_dir / f"ms_{_digest(f, tt)}.json"
        trace, used_trials, cached = _cached_trace(path, f, trials)
        if trace is None:
            trace = _tune(f, tt, trials)
            used_trials = trials
            _save(path, {"trace": trace, "trials": trials, "target": tt.spec, "tvm": tvm.__version__, "kernel": name})
        tuned_f = _apply(f, trace)
        default_s, tuned_s, same = _time_pair(f, tuned_f, low, tt)
        used = same and tuned_s < default_s
        if not same:
            log.warning("meta_schedule kernel of %s disagrees with the default schedule; not used", name)
        if used:
            tuned[name] = tuned_f.with_attr("global_symbol", name)
        records[name] = {"nodes": nodes, "flops": flops, "default_s": default_s, "tuned_s": tuned_s, "used": used,
                         "trials": used_trials, "cached": cached, "trace_file": str(path)}
        log.info("meta_schedule %s: default %.3g s, tuned %.3g s (%d trials%s) -> %s", name, default_s, tuned_s,
                 used_trials, ", cached" if cached else "", "tuned" if used else "default")
        if tick is not None:
            tick()
    return tuned, records


def _digest(f: Any, tt: TvmTarget) -> str:
    import tvm

    text = json.dumps([f.script(), tt.spec, tvm.__version__], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def _cached_trace(path: Path, f: Any, trials: int) -> tuple[Any, int, bool]:
    """(trace JSON, its trials, True) when `path` holds a replayable trace of >= `trials`, else (None, 0, False)."""
    try:
        meta = json.loads(path.read_text())
        trace, done = meta["trace"], int(meta["trials"])
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or unreadable: tune
        return None, 0, False
    if done < trials:
        return None, 0, False
    try:
        _apply(f, trace)  # a trace this TVM cannot replay counts as missing
        return trace, done, True
    except Exception as e:  # noqa: BLE001 - TVM's errors when a stale trace does not replay
        log.warning("cached meta_schedule trace %s does not replay (%s); tuning again", path.name,
                    str(e).splitlines()[0][:200])
    return None, 0, False


def _save(path: Path, meta: dict[str, Any]) -> None:
    """Write `meta` to `path` atomically (a concurrent compile never reads half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(meta, fh)
    os.replace(tmp, path)


def _apply(f: Any, trace: Any) -> Any:
    """The PrimFunc `f` scheduled by replaying a trace (JSON as _tune returns it)."""
    import tvm
    from tvm import s_tir

    sch = s_tir.Schedule(tvm.IRModule({"main": f}))
    s_tir.Trace.apply_json_to_schedule(trace, sch)
    return sch.mod["main"]


def _tune(f: Any, tt: TvmTarget, trials: int) -> Any:
    """meta_schedule's best trace (plain JSON) for `f` after `trials` candidates measured here."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    mod = tvm.IRModule({"main": f})
    target = tt.tvm()
    evolve = trials >= EVOLVE_MIN_TRIALS
    strategy = (ms.search_strategy.EvolutionarySearch(population_size=64, init_min_unmeasured=16, genetic_num_iters=1)
                if evolve else "replay-trace")
    ms_log = logging.getLogger("tvm.s_tir.meta_schedule")
    level = ms_log.level
    if not log.isEnabledFor(logging.DEBUG):  # its console handler takes this level: keep the tables off stdout
        ms_log.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(prefix="lpdc-ms-") as work_dir:
            builder, runner = in_process(target, work_dir)
            db = ms.tune_tir(mod, target, work_dir=work_dir, max_trials_global=trials,
                             num_trials_per_iter=min(trials, 16), builder=builder, runner=runner,
                             cost_model="xgb" if evolve and find_spec("xgboost") else "random",
                             strategy=strategy, num_tuning_cores=1, seed=0)
            sch = ms.tir_integration.compile_tir(db, mod, target)
    finally:
        ms_log.setLevel(level)
    if sch is None:
        raise LpdcTargetError(f"meta_schedule found no valid schedule for {f.attrs['global_symbol']} "
                              f"in {trials} trials", where=tt.name)
    return _plain(sch.trace.as_json(remove_postproc=False))


def _plain(obj: Any) -> Any:
    """A trace's JSON with TVM containers and immediates as Python lists, ints, floats and strs."""
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if hasattr(obj, "value") and not hasattr(obj, "items"):  # IntImm / FloatImm / StringImm
        return obj.value
    if hasattr(obj, "items"):
        return {str(k): _plain(v) for k, v in obj.items()}
    return [_plain(x) for x in obj]


def _time_pair(f: Any, tuned_f: Any, low: Lowered, tt: TvmTarget) -> tuple[float, float, bool]:
    """(default, tuned) median seconds here and whether both compute the same output.

    The default is `f` under the project's schedule (build.py's _schedule_cpu), the tuned one the
    replayed trace; both are built into one module and called on the same arguments (the real
    packed weights, random activations), alternating so load on the shared host hits both alike."""
    import tvm

    from .build import _schedule_cpu
    from .sparse_select import timing_args

    mod = tvm.IRModule({"default": _schedule_cpu(f.with_attr("global_symbol", "default"), low, tt),
                        "tuned": tuned_f.with_attr("global_symbol", "tuned")})
    lib = tvm.compile(mod, target=tt.tvm()).jit()
    dev = tvm.cpu()
    args = timing_args(low, dev)
    lib["default"](*args)
    ref = args[-1].numpy().copy()
    lib["tuned"](*args)
    got = args[-1].numpy()
    same = bool(np.allclose(got, ref, rtol=1e-4, atol=1e-5 * max(float(np.abs(ref).max()), 1e-30)))
    samples: dict[str, list[float]] = {"default": [], "tuned": []}
    for _ in range(ROUNDS):
        for fn in samples:
            ev = lib.time_evaluator(fn, dev, number=1, repeat=REPEATS, min_repeat_ms=MIN_REPEAT_MS)
            samples[fn].extend(ev(*args).results)
    return statistics.median(samples["default"]), statistics.median(samples["tuned"]), same
