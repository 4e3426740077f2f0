"""Turn an upgraded, phase-filtered Caffe net into an lpdc Graph.

Blobs are tracked by name; a layer that writes a blob it reads (in-place ReLU, BatchNorm, ...)
creates a new SSA value. The last write of each blob carries the blob's name, so graph outputs
and inputs are named as in the prototxt; earlier versions are named after the layer that wrote
them. Graph outputs are Caffe's: blobs no later layer consumes. Training-only layers (losses,
Accuracy, Silence) are skipped without consuming anything; data layers' tops become inputs.
"""

from __future__ import annotations

import difflib
import logging
from typing import Any

from ...errors import LpdcError, LpdcGraphError, LpdcParseError, LpdcUnsupportedError
from ...ir import Graph, Value
from . import layers_nn, layers_tensor  # noqa: F401  (registers the converters)
from .context import CONVERTERS, Ctx
from .params import WeightSource
from .tables import TRAINING_ONLY
from .upgrade import filter_phase

log = logging.getLogger("lpdc.caffe")


def convert_net(net: Any, source: str, weights: WeightSource, shapes: dict[str, tuple[int, ...]],
                name: str) -> Graph:
    """The Graph of `net` (a V2 NetParameter) in TEST phase."""
    layers = filter_phase(net)
    kept = [la for la in layers if la.type not in TRAINING_ONLY]
    dropped = {t: la for la in layers if la.type in TRAINING_ONLY for t in la.top}
    ctx = Ctx(Graph(net.name or name), weights, source, dict(shapes),
              used_blobs={b for la in kept for b in la.bottom})
    last_writer = {t: i for i, la in enumerate(kept) for t in la.top}
    reserved = set(last_writer) | {b for la in kept for b in la.bottom}
    blobs: dict[str, Value] = {}
    available: dict[str, None] = {}  # Caffe's net outputs: blobs written and not consumed since
    for i, layer in enumerate(kept):
        ctx.layer = layer
        bottoms = [_bottom(ctx, b, blobs, dropped) for b in layer.bottom]
        ctx.out_names = [_value_name(ctx.g, layer, t, last_writer[t] == i, reserved) for t in layer.top]
        outs = _run(ctx, layer, bottoms)
        for b in layer.bottom:
            available.pop(b, None)
        for t, v in zip(layer.top, outs, strict=True):
            if v is not None:
                blobs[t] = v
                available.pop(t, None)
                available[t] = None
    _check_shapes_used(ctx)
    outputs = list(dict.fromkeys(blobs[b] for b in available))
    if not outputs:
        raise LpdcGraphError("the net has no outputs (every blob is consumed, or there are no layers)", where=source)
    ctx.g.set_outputs(outputs)
    ctx.g.verify()
    log.info("%s: %d Caffe layers -> %d nodes, outputs %s", source, len(kept), len(ctx.g.nodes),
             [v.name for v in outputs])
    return ctx.g


def _bottom(ctx: Ctx, blob: str, blobs: dict[str, Value], dropped: dict[str, Any]) -> Value:
    if blob in blobs:
        return blobs[blob]
    if blob in dropped:
        d = dropped[blob]
        msg = f"bottom '{blob}' comes from training-only layer '{d.name}' ({d.type}), which inference drops"
    else:
        near = difflib.get_close_matches(blob, list(blobs), n=1)
        hint = f" (did you mean '{near[0]}'?)" if near else ""
        msg = f"bottom '{blob}' is not produced by any earlier layer{hint}"
    raise ctx.error(LpdcGraphError, msg + " (field `bottom`)")


def _value_name(g: Graph, layer: Any, top: str, final: bool, reserved: set[str]) -> str:
    """The blob name for its last write (unless an input took it); else the layer name, or
    `<blob>.<layer>` when the layer is named like a blob."""
    if final and g.fresh_name(top) == top:
        return top
    if layer.name and layer.name not in reserved:
        return g.fresh_name(layer.name)
    return g.fresh_name(f"{top}.{layer.name}")


def _run(ctx: Ctx, layer: Any, bottoms: list[Value]) -> list[Value | None]:
    fn = CONVERTERS.get(layer.type)
    if fn is None:
        near = difflib.get_close_matches(layer.type, list(CONVERTERS), n=2)
        hint = f" (did you mean {' or '.join(repr(n) for n in near)}?)" if near else ""
        raise ctx.error(LpdcUnsupportedError, f"unknown layer type '{layer.type}' (field `type`){hint}")
    try:
        outs = fn(ctx, layer, bottoms)
    except LpdcError as e:
        if e.where is not None and e.where.startswith((ctx.source, ctx.weights.weights_name)):
            raise  # already located in the prototxt or the caffemodel
        detail = f" [{e.where}]" if e.where else ""
        raise type(e)(f"{e.message}{detail}", where=ctx.where()) from None
    except (ValueError, IndexError, KeyError, TypeError, ZeroDivisionError) as e:
        raise ctx.error(LpdcParseError, f"cannot convert the layer: {type(e).__name__}: {e}") from e
    if len(outs) != len(layer.top):
        raise ctx.error(LpdcParseError, f"the layer has {len(layer.top)} tops, {layer.type} produces {len(outs)}")
    return outs


def _check_shapes_used(ctx: Ctx) -> None:
    unused = sorted(set(ctx.shapes) - ctx.shapes_used)
    if unused:
        inputs = [v.name for v in ctx.g.inputs]
        raise LpdcParseError(f"shapes= names {unused}, which are not input blobs of the net (inputs: {inputs})",
                             where=ctx.source)
