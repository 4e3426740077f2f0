"""Measurement kind "numpy": time one layer choice (or a layout conversion) on the host.

Runs inside a measurement worker process (autotune/worker.py), never in the campaign process,
so a primitive that hangs or crashes takes only the worker down. Inputs are random, in the
primitive's input layout; weights are random with the signature's density (pruned weights are
zeroed at random), so sparse primitives see the sparsity they will see in the model.

Timing: one warm-up call (which also packs the weights, as a deployed model does at load time),
then `repeats` samples, each the mean of `number` back-to-back calls, `number` chosen so a sample
lasts at least `min_repeat_ms` (timer resolution and call overhead stay negligible).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from ..errors import LpdcUnsupportedError
from .keys import Choice, Signature

__all__ = ["CLOCKS", "measure_numpy", "time_callable"]


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def time_callable(fn: Callable[[], object], repeats: int, min_repeat_ms: float, clock: str = "wall") -> list[float]:
    """Seconds per call of `fn`: one warm-up, then `repeats` samples of >= min_repeat_ms each.

    clock "wall" is elapsed time; "cpu" is this process's CPU time (all its threads), which time
    spent waiting while other processes run does not inflate (a shared machine)."""
    now = CLOCKS[clock]
    t0 = now()
    fn()
    first = now() - t0
    number = max(1, math.ceil(min_repeat_ms * 1e-3 / max(first, 1e-7)))
    samples = []
    for _ in range(max(1, repeats)):
        t0 = now()
        for _ in range(number):
            fn()
        samples.append((now() - t0) / number)
    return samples


def _weights(rng: np.random.Generator, shape: tuple[int, ...], dtype: str, density: float) -> np.ndarray:
    w = rng.standard_normal(shape).astype(dtype)
    if density < 1.0:
        w[rng.random(shape) >= density] = 0
    return w


def _layout_convert_fn(sig: Signature) -> Callable[[], object]:
    from ..backends.numpy.layout import from_nchw, to_nchw

    shape = tuple(sig.get("shape"))
    src, dst = str(sig.get("src")), str(sig.get("dst"))
    x_nchw = np.random.default_rng(0).standard_normal(shape).astype(str(sig.get("dtype", "float32")))
    x = from_nchw(x_nchw, src)
    channels = shape[1] if len(shape) == 4 else 0
    return lambda: from_nchw(to_nchw(x, src, channels), dst)


def _primitive_fn(sig: Signature, choice: Choice) -> Callable[[], object]:
    from ..backends.numpy.layout import from_nchw
    from ..backends.numpy.primitives import get_primitive

    spec = sig.to_spec()
    prim = get_primitive(choice.primitive, sig.op)
    if choice.layout and choice.layout != prim.in_layout:
        raise LpdcUnsupportedError(f"primitive {prim.name} takes {prim.in_layout}, not {choice.layout}")
    if not prim.applies(spec):
        raise LpdcUnsupportedError(f"primitive {prim.name} does not apply to {sig.key}")
    rng = np.random.default_rng(0)
    if sig.op == "conv":
        x = from_nchw(rng.standard_normal((spec.n, spec.c, spec.h, spec.w)).astype(spec.dtype), prim.in_layout)
        w = _weights(rng, (spec.o, spec.cg, spec.kh, spec.kw), spec.dtype, spec.density)
    else:
        x = rng.standard_normal((spec.batch, spec.k)).astype(spec.dtype)
        w = _weights(rng, (spec.m, spec.k), spec.dtype, spec.density)
    return lambda: prim.run(x, w, spec)


def _params(recipe: Mapping[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Constants of a scratch layer: verbatim, or random with the recorded weight density."""
    out = {}
    for name, r in recipe.items():
        if r.get("data") is not None:
            out[name] = np.asarray(r["data"], dtype=r["dtype"]).reshape(r["shape"])
        else:
            out[name] = _weights(rng, tuple(r["shape"]), r["dtype"], float(r.get("density", 1.0)))
    return out


def _node_fn(payload: Mapping[str, Any], choice: Choice) -> Callable[[], object]:
    """The layer rebuilt from its payload (autotune/layers.py), run as `choice` by its NumPy kernel."""
    from ..ir import parse
    from ..passes.select.choices import Choice as SelectChoice
    from ..passes.select.measure import node_runner

    g = parse(payload["ir"], _params(payload.get("params", {}), np.random.default_rng(0)), source="<layer>")
    node = next((n for n in g.nodes if n.name == payload["node"]), None)
    if node is None:
        raise LpdcUnsupportedError(f"layer payload has no node {payload['node']!r}")
    return node_runner(node, g, SelectChoice(choice.primitive, choice.layout or "NCHW"))


def _convert_fn(payload: Mapping[str, Any], choice: Choice) -> Callable[[], object]:
    """A layout_convert node moving the payload's activation between the choice's layouts."""
    from ..backends.numpy.kernels import get_kernel
    from ..ir import Graph, TensorType
    from ..passes.select.choices import retyped

    src, _, dst = choice.layout.partition("->")
    t = TensorType(tuple(payload["shape"]), payload["dtype"])
    g = Graph("convert")
    x = g.add_input("x", retyped(t, src))
    node = g.add_node("layout_convert", [x], {"src": src, "dst": dst, "channels": t.shape[1]})
    arrays = [np.random.default_rng(0).standard_normal(x.type.shape).astype(np.float32)]
    kernel = get_kernel("layout_convert")
    return lambda: kernel(node, arrays, g)


def measure_numpy(sig: Signature, choice: Choice, repeats: int, min_repeat_ms: float,
                  on_start: Callable[[], None], payload: Mapping[str, Any] | None = None,
                  clock: str = "wall") -> list[float]:
    """Seconds per run of `choice` on layer `sig`; `on_start` is called when the timed part begins.

    With a payload the layer is rebuilt from it (a whole node, epilogue included, or a layout
    conversion); without one the signature is a catalog geometry and the bare primitive is timed.
    """
    if payload and "convert" in payload:
        fn = _convert_fn(payload["convert"], choice)
    elif payload and "ir" in payload:
        fn = _node_fn(payload, choice)
    elif sig.op == "layout_convert":
        fn = _layout_convert_fn(sig)
    elif sig.op in ("conv", "fully_connected"):
        fn = _primitive_fn(sig, choice)
    else:
        raise LpdcUnsupportedError(f"the numpy measurement kind cannot time op {sig.op!r}")
    on_start()
    with np.errstate(all="ignore"):
        return time_callable(fn, repeats, min_repeat_ms, clock)
