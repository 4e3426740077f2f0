"""Per layer, the dense or the sparse TVM kernel of a pruned FC / conv (`compile_tvm(sparse=...)`).

A density threshold is a guess made on one machine for one shape; whether gathers beat dense
FMAs depends on the layer and the host. So "measure" builds both kernels and keeps the one
that ran faster here, and a pruned layer runs sparse only where that is faster. Modes:

- "auto" (default): FC by effective density (sparse_fc.MAX_SPARSE_DENSITY, batch <= MAX_SPARSE_BATCH);
  conv always dense (its sparse kernel wins only at high sparsity: measure to use it).
- "measure": every FC / group-1 conv whose effective density is below MEASURE_MAX_DENSITY gets
  both kernels built and timed with TVM's time_evaluator on this host (median of REPEATS, each
  repeat at least MIN_REPEAT_MS); the faster is kept. Times are cached in this process per
  (target, kernel key), so repeated blocks and recompiles are timed once.
- "off": dense everywhere. "on": sparse wherever a sparse kernel exists (tests, benchmarks).

Every decision is recorded (Plan.sparse_choices, TvmExecutable.sparse_choices): node name ->
{"picked": "sparse" | "dense", "dense_s", "sparse_s" (seconds, None when not measured),
"density" (effective), "how" ("threshold" | "measured" | "too dense" | "forced")}.
"""

from __future__ import annotations

import logging
import statistics
from typing import Any

import numpy as np

from ...errors import LpdcError, LpdcTargetError
from ...ir import Graph, Node
from . import sparse_fc as SP
from .lower import Lowered, lower_node
from .target import TvmTarget

log = logging.getLogger(__name__)

MODES = ("auto", "measure", "off", "on")
MEASURE_MAX_DENSITY = 0.5  # effective density at and above which "measure" keeps dense untimed
REPEATS = 5
MIN_REPEAT_MS = 10

_TIMES: dict[tuple, float] = {}  # (target spec, Lowered.key) -> median seconds


def sparse_density(node: Node, g: Graph) -> float | None:
    """Effective density of the node's sparse kernel (padded slots / dense weights), or None
    when no sparse kernel applies (not an f32 FC / group-1 conv with constant weights)."""
    if node.op not in ("conv", "fully_connected") or len(node.inputs) < 2 or node.inputs[1] is None:
        return None
    if any(v is not None and (v.type.dtype != "f32" or v.type.quant is not None)
           for v in (*node.inputs, *node.outputs)):
        return None
    w = g.const_data(node.inputs[1])
    if w is None:
        return None
    if node.op == "fully_connected":
        return SP.effective_density(w) if w.ndim == 2 else None
    if w.ndim != 4 or node.attrs.get("group", 1) != 1:
        return None
    from .sparse_conv import effective_density

    return effective_density(w)


def pick_sparse(node: Node, g: Graph, tt: TvmTarget, knobs: Any, mode: str,
                record: dict[str, dict[str, Any]]) -> bool | None:
    """True / False: lower `node` sparse / dense (and note why in `record`); None: not a layer
    with a sparse kernel (or "auto" on a conv), lower_node's default applies."""
    if mode not in MODES:
        raise LpdcError(f"sparse must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "measure" and not tt.runs_here:
        raise LpdcTargetError(f"sparse='measure' times kernels on this host; target {tt.name!r} builds for "
                              "another machine (use 'auto', 'on' or 'off')", where=tt.name)
    if mode == "auto" and node.op == "conv":
        return None
    density = sparse_density(node, g)
    if density is None:
        return None
    dense_s = sparse_s = None
    if mode == "auto":
        x = node.inputs[0]
        rows = int(np.prod(x.type.shape[:node.attrs["axis"] % max(x.type.rank, 1)]))
        picked, how = rows <= SP.MAX_SPARSE_BATCH and density < SP.MAX_SPARSE_DENSITY, "threshold"
    elif mode in ("on", "off"):
        picked, how = mode == "on", "forced"
    elif density >= MEASURE_MAX_DENSITY:
        picked, how = False, "too dense"
    else:
        dense_s, sparse_s = measure_pair(node, g, tt, knobs)
        picked, how = sparse_s < dense_s, "measured"
    record[node.name] = {"picked": "sparse" if picked else "dense", "dense_s": dense_s, "sparse_s": sparse_s,
                         "density": density, "how": how}
    return picked


def measure_pair(node: Node, g: Graph, tt: TvmTarget, knobs: Any = None) -> tuple[float, float]:
    """(dense, sparse) median seconds of the node's two kernels on this host (cached per key).
    A sparse kernel that fails to build or run counts as infinitely slow."""
    vec = max(tt.vec, 4)
    dense = time_lowered(lower_node(node, g, vec, knobs, tt.registers, sparse=False), tt)
    try:
        sparse = time_lowered(lower_node(node, g, vec, knobs, tt.registers, sparse=True), tt)
    except Exception as e:  # noqa: BLE001 - a sparse kernel that cannot be built only loses the comparison
        log.warning("sparse kernel of %s not timed (%s); keeping dense", node.name, str(e).splitlines()[0][:200])
        sparse = float("inf")
    return dense, sparse


def timing_args(low: Lowered, dev: Any) -> list[Any]:
    """Device tensors to call `low`'s kernel with: its real bound (packed) weights, seeded random
    data for graph values, an empty output (the last tensor)."""
    import tvm

    from .executable import _weight, aligned

    rng = np.random.default_rng(0)
    args = []
    for t, a in zip(low.tensors, [*low.args, None], strict=True):
        shape, dtype = tuple(int(d) for d in t.shape), str(t.dtype)
        if a is None:
            args.append(tvm.runtime.empty(shape, dtype, dev))
        elif isinstance(a, np.ndarray):
            args.append(tvm.runtime.tensor(aligned(_weight(a)), dev))
        else:
            args.append(tvm.runtime.tensor(rng.standard_normal(shape).astype(dtype), dev))
    return args


def time_lowered(low: Lowered, tt: TvmTarget) -> float:
    """Median seconds of one lowered kernel, scheduled as build_module would, on this host.

    Graph-value arguments get random data of their stored shape; bound weights are the real
    (packed) ones, so a sparse kernel reads its actual index pattern."""
    key = (repr(sorted(tt.spec.items())), low.key)
    if key in _TIMES:
        return _TIMES[key]
    import tvm
    from tvm import te

    from .build import _schedule_cpu
    from .threads import ensure_threads

    ensure_threads()  # time kernels with the threads the executable will run them with

    f = _schedule_cpu(te.create_prim_func(low.tensors).with_attr("global_symbol", "kernel"), low, tt)
    lib = tvm.compile(tvm.IRModule({"kernel": f}), target=tt.tvm()).jit()
    dev = tvm.cpu()
    args = timing_args(low, dev)
    lib["kernel"](*args)  # warm-up: caches, page faults, the thread pool
    ev = lib.time_evaluator("kernel", dev, number=1, repeat=REPEATS, min_repeat_ms=MIN_REPEAT_MS)
    seconds = statistics.median(ev(*args).results)
    _TIMES[key] = seconds
    return seconds
