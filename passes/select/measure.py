"""The micro-benchmark behind measured costs: one node, one choice, on the host NumPy backend.

The node is rebuilt alone in a scratch graph whose activations are inputs typed in the choice's
layout and whose constants are the real weights (their sparsity decides the sparse primitives);
its NumPy kernel then runs on random data: once to warm up (primitives pack their weights then,
as they would at load time), then until `budget_s` is spent or `max_repeats` runs are done. The
cost is the fastest run: on a shared machine, noise only ever adds time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from ...backends.numpy.kernels import get_kernel
from ...errors import LpdcError, LpdcPassError
from ...ir import Graph, Node, TensorType, Value, dtypes
from .choices import Choice, attrs_for, data_inputs, retyped

DEFAULT_BUDGET_S = 0.05
DEFAULT_MAX_REPEATS = 5
_SLOW_S = 0.25  # a run slower than this is repeated only once more


Clock = Callable[[], float]


def blas_threads() -> int:
    """Threads NumPy's BLAS uses (measured costs depend on it; SciPy may load a second BLAS)."""
    try:
        from threadpoolctl import threadpool_info

        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        mine = [p for p in blas if "numpy" in str(p.get("filepath", ""))] or blas
        return max((int(p.get("num_threads", 1)) for p in mine), default=1)
    except Exception:  # threadpoolctl missing or confused: costs are still comparable within one run
        return 1


def cpu_clock() -> Clock:
    """The clock to time with: this process's CPU time when the BLAS runs single-threaded (it
    ignores the time other processes hold the cores, which wall time cannot), else wall time."""
    return time.process_time if blas_threads() == 1 else time.perf_counter


def time_call(fn: Callable[[], object], budget_s: float = DEFAULT_BUDGET_S,
              max_repeats: int = DEFAULT_MAX_REPEATS, clock: Clock = time.perf_counter) -> float:
    """Seconds of the fastest of a few timed calls of `fn` after one warm-up call.

    Whether a layer is slow is judged on the first timed call, not the warm-up: the warm-up
    includes one-time weight packing (a CSR copy of a large pruned layer takes far longer than
    a multiplication with it), and a single noisy sample would then decide the layer's cost."""
    fn()
    best, spent = float("inf"), 0.0
    for i in range(max_repeats):
        t0 = clock()
        fn()
        dt = clock() - t0
        best, spent = min(best, dt), spent + dt
        if dt > _SLOW_S or (i >= 1 and spent > budget_s):
            break
    return best


def _random(t: TensorType, rng: np.random.Generator) -> np.ndarray:
    dt = dtypes.to_numpy(t.dtype)
    if dt.kind == "f":  # positive: log, sqrt and reciprocal stay finite
        return rng.uniform(0.1, 1.0, t.shape).astype(dt)
    if dt.kind == "b":
        return rng.integers(0, 2, t.shape).astype(dt)
    return rng.integers(0, 8, t.shape).astype(dt)


def node_runner(node: Node, graph: Graph, choice: Choice, seed: int = 0) -> Callable[[], list[np.ndarray]]:
    """A zero-argument function running `node` as `choice` on random activations."""
    rng = np.random.default_rng(seed)
    g = Graph("bench")
    idx = set(data_inputs(node)) if choice.layout not in ("NCHW", "-") else set()
    ins: list[Value | None] = []
    arrays: list[np.ndarray | None] = []
    for i, v in enumerate(node.inputs):
        if v is None:
            ins.append(None)
            arrays.append(None)
            continue
        t = retyped(v.type, choice.layout) if i in idx else v.type
        data = graph.const_data(v)
        if data is not None and i not in idx:
            nv = g.add_const(data, f"c{i}", dtype=v.type.dtype, quant=v.type.quant)
            arrays.append(g.params[nv.producer.attrs["param"]])
        else:
            nv = g.add_input(f"in{i}", t)
            arrays.append(_random(nv.type, rng))
        ins.append(nv)
    attrs = {**attrs_for(node, choice.layout), "primitive": choice.primitive}
    try:
        bench = g.add_node(node.op, ins, attrs, name=node.name)
    except LpdcError as e:
        raise LpdcPassError(f"cannot benchmark choice {choice.label}: {e}", where=f"node '{node.name}'") from e
    kernel = get_kernel(node.op)
    return lambda: kernel(bench, arrays, g)


def time_node(node: Node, graph: Graph, choice: Choice, budget_s: float = DEFAULT_BUDGET_S,
              clock: Clock = time.perf_counter) -> float:
    """Measured seconds of `node` run as `choice` (see the module docstring)."""
    run = node_runner(node, graph, choice)
    with np.errstate(all="ignore"):
        return time_call(run, budget_s, clock=clock)


def time_convert(t: TensorType, src: str, dst: str, budget_s: float = DEFAULT_BUDGET_S,
                 clock: Clock = time.perf_counter) -> float:
    """Measured seconds of the layout_convert kernel moving activation `t` from `src` to `dst`."""
    if src == dst:
        return 0.0
    g = Graph("bench")
    x = g.add_input("x", retyped(t, src))
    node = g.add_node("layout_convert", [x], {"src": src, "dst": dst, "channels": t.shape[1]})
    arrays = [_random(x.type, np.random.default_rng(0))]
    kernel = get_kernel("layout_convert")
    return time_call(lambda: kernel(node, arrays, g), budget_s, clock=clock)
