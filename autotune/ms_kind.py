"""Measurement kind "meta_schedule": a conv2d / dense kernel tuned by TVM's meta_schedule, then timed.

Runs inside a measurement worker process. The compute is tvm_kind's (same TE/TOPI definition),
so a meta_schedule row and a hand-scheduled "tvm" row of one layer time the same computation.
The choice's config names the search (`{"schedule": "meta_schedule", "trials": N, "seed": S}`),
which is known before tuning and so keys the row (a rerun skips it); what the search found, the
best schedule's trace, is only known after, so it goes into the row's `found` column
(`{"trace_sha256": ..., "trace_file": "ms_<digest>.json", "trials": N}`) and the trace itself,
with its decisions, into that JSON file beside the kernel (in the kernel cache dir).

Tuning runs on this host, in the worker (backends/tvm/ms_in_process.py: meta_schedule's own
local builder and runner would each start a process that imports TVM; random cost model: a few
trials do not train a model) in a temporary work dir that is deleted afterwards; the tuned
kernel is exported to the cache dir by (signature, choice, target), so a retried measurement is
neither retuned nor rebuilt. Timing is tvm_kind's `time_evaluator` path, host only: tuning on a
board would need meta_schedule's own RPC runner, which this kind does not drive.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import LpdcTargetError
from .keys import Choice, Signature, canonical
from .layers import Work
from .tvm_kind import FUNC, _compute, _time, tvm_target

__all__ = ["KIND", "kernel_path", "measure_ms", "ms_choice", "ms_target", "ms_work"]

KIND = "meta_schedule"


def ms_choice(sig: Signature, device: str = "x86", trials: int = 8, seed: int = 0) -> Choice:
    """The choice naming a meta_schedule search of `trials` candidates for layer `sig`."""
    prim, layout = ("tvm_conv2d", "NCHW") if sig.op == "conv" else ("tvm_dense", "NC")
    return Choice.make(prim, layout, device, config={"schedule": KIND, "trials": int(trials), "seed": int(seed)})


def ms_work(sig: Signature, device: str = "x86", trials: int = 8, seed: int = 0) -> Work:
    """A campaign work item: tune and time layer `sig` with meta_schedule."""
    return Work(KIND, sig, ms_choice(sig, device, trials, seed))


def ms_target(device: str, override: str = "") -> dict[str, Any]:
    """tvm_kind's target for the device, with the "num-cores" meta_schedule requires."""
    target, cc = tvm_target(device, override)
    if cc:
        raise LpdcTargetError(f"meta_schedule tunes on this host only; {device} needs a cross compiler ({cc})")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    target.setdefault("num-cores", max(1, cores))
    return target


def kernel_path(sig: Signature, choice: Choice, target: Mapping[str, Any], cache_dir: str | os.PathLike[str]) -> Path:
    """Where the tuned kernel of (sig, choice, target) is exported (its trace: same name, .json)."""
    digest = hashlib.sha256(canonical([KIND, sig.key, choice.key, target]).encode()).hexdigest()[:24]
    return Path(cache_dir) / f"ms_{digest}.so"


def _tune(sig: Signature, choice: Choice, target: Mapping[str, Any], path: Path) -> None:
    """Tune, compile the best schedule, export it to `path` and its trace to `path.with_suffix('.json')`."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from ..backends.tvm.ms_in_process import in_process

    cfg = choice.config_dict()
    trials = max(1, int(cfg.get("trials", 8)))
    tensors, _ = _compute(sig)
    mod = tvm.IRModule({"main": tvm.te.create_prim_func(tensors).with_attr("global_symbol", "main")})
    tgt = tvm.target.Target(dict(target))
    with tempfile.TemporaryDirectory(prefix="lpdc-ms-") as work_dir:
        builder, runner = in_process(tgt, work_dir)
        db = ms.tune_tir(mod, tgt, work_dir=work_dir, max_trials_global=trials, num_trials_per_iter=trials,
                         builder=builder, runner=runner, cost_model="random", strategy="replay-trace",
                         num_tuning_cores=1, seed=int(cfg.get("seed", 0)))
        sch = ms.tir_integration.compile_tir(db, mod, tgt)
    if sch is None:
        raise RuntimeError(f"meta_schedule found no valid schedule in {trials} trials")
    trace = json.loads(json.dumps(sch.trace.as_json(), default=str))
    func = sch.mod["main"].with_attr("global_symbol", FUNC)
    lib = tvm.compile(tvm.IRModule({FUNC: func}), target=tgt)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Temporary names and renames, the .so last: a kernel on disk always has its trace beside it.
    meta = {"trace": trace, "sha256": hashlib.sha256(canonical(trace).encode()).hexdigest(), "trials": trials}
    fd, tmp = tempfile.mkstemp(suffix=".json", dir=path.parent)
    with os.fdopen(fd, "w") as f:
        json.dump(meta, f)
    os.replace(tmp, path.with_suffix(".json"))
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    lib.export_library(tmp)
    os.replace(tmp, path)


def measure_ms(sig: Signature, choice: Choice, repeats: int, min_repeat_ms: float, on_start: Callable[[str], None],
               target_override: str = "", remote: Mapping[str, Any] | None = None,
               cache_dir: str | os.PathLike[str] | None = None) -> tuple[list[float], dict[str, Any]]:
    """(seconds per run, the row's `found`: the tuned trace's hash and file) of the meta_schedule kernel."""
    if remote:
        raise LpdcTargetError("the meta_schedule kind measures on this host only, not over RPC")
    import tvm

    target = ms_target(choice.device or "x86", target_override)
    path = kernel_path(sig, choice, target, cache_dir or Path(tempfile.gettempdir()) / "lpdc-tvm-kernels")
    if not path.exists():
        _tune(sig, choice, target, path)
    meta = json.loads(path.with_suffix(".json").read_text())
    _, shapes = _compute(sig)
    lib = tvm.runtime.load_module(str(path))
    on_start("")
    samples = _time(lib, tvm.cpu(), shapes, repeats, min_repeat_ms)
    found = {"trace_sha256": meta["sha256"], "trace_file": path.with_suffix(".json").name, "trials": meta["trials"]}
    return samples, found
