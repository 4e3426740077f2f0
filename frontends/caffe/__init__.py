"""The Caffe frontend: deploy.prototxt (+ .caffemodel) into an lpdc Graph, with no Caffe installed.

    g = load_caffe("deploy.prototxt", weights="net.caffemodel")
    g = load_caffe("deploy.prototxt", random_weights=True, shapes={"data": [1, 3, 224, 224]})

V0, V1 and current nets (and V1 caffemodels) are upgraded as Caffe does; the net is taken in its
TEST phase. Files: caffe.proto (schema subset) -> protoparse/schema (descriptors), reader (files),
upgrade (old formats, phases), params (weights), convert + layers_* (layers into IR ops).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...errors import LpdcParseError
from ...ir import Graph
from .convert import convert_net
from .params import WeightSource
from .reader import read_caffemodel, read_prototxt
from .upgrade import upgrade_net

__all__ = ["load_caffe", "load_caffe_parts"]


def load_caffe(path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None,
               random_weights: bool = False, seed: int = 0,
               shapes: Mapping[str, Sequence[int]] | None = None, **_: Any) -> Graph:
    """Load a Caffe net; weights from `weights` (a .caffemodel) or, with random_weights, generated.

    `shapes` overrides input blob shapes by name (e.g. a smaller image, or the shape of a training
    net's Data layer, which the prototxt does not state). With both `weights` and random_weights,
    layers the caffemodel lacks get random values (with a warning).
    """
    return load_caffe_parts(path, weights, random_weights, seed, shapes)[0]


def load_caffe_parts(path: str | os.PathLike[str], weights: str | os.PathLike[str] | None = None,
                     random_weights: bool = False, seed: int = 0,
                     shapes: Mapping[str, Sequence[int]] | None = None,
                     record: bool = False) -> tuple[Graph, Any, WeightSource]:
    """`load_caffe`, also returning the upgraded NetParameter and the WeightSource; with `record`
    it keeps every blob handed out, in Caffe layout (tools/caffe_weights.py writes them out)."""
    source = str(path)
    net = upgrade_net(read_prototxt(path), source)
    model = None
    weights_name = "<random>"
    if weights is not None:
        weights_name = str(weights)
        model = read_caffemodel(weights)
        _warn_unknown_layers(net, model, weights_name, source)
    ws = WeightSource(model, bool(random_weights), int(seed), weights_name, record)
    graph = convert_net(net, source, ws, _shape_overrides(shapes, source), Path(source).name.split(".")[0])
    ws.report()
    return graph, net, ws


def _shape_overrides(shapes: Mapping[str, Sequence[int]] | None, source: str) -> dict[str, tuple[int, ...]]:
    out: dict[str, tuple[int, ...]] = {}
    for name, dims in (shapes or {}).items():
        try:
            out[str(name)] = tuple(int(d) for d in dims)
        except (TypeError, ValueError):
            raise LpdcParseError(f"shapes[{name!r}] must be a list of integers, got {dims!r}", where=source) from None
    return out


def _warn_unknown_layers(net: Any, model: dict[str, Any], weights_name: str, source: str) -> None:
    """Caffe ignores caffemodel layers the prototxt lacks; say so when they carry weights."""
    names = {layer.name for layer in net.layer}
    extra = [n for n, lb in model.items() if lb.blobs and n not in names]
    if extra:
        shown = ", ".join(f"'{n}'" for n in extra[:5]) + (" ..." if len(extra) > 5 else "")
        warnings.warn(f"{weights_name}: weights for {len(extra)} layer(s) that {source} does not have were ignored: "
                      f"{shown}", stacklevel=3)
