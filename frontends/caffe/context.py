"""The converter registry and the context a layer converter works in.

A converter is `fn(ctx, layer, bottoms) -> [value per top]` registered for one or more Caffe
type strings with `@converter`. It reads its `*_param`, asks `ctx.blobs` for learned blobs in
Caffe layout, and emits IR nodes with `ctx.emit` (top-producing nodes get the value names the
driver chose; helper nodes get `<layer>/<op>` names). Returning a bottom unchanged aliases it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import LpdcParseError
from ...ir import Graph, TensorType, Value
from .params import BlobSpec, WeightSource

Converter = Callable[["Ctx", Any, list[Value]], list[Value | None]]
CONVERTERS: dict[str, Converter] = {}


def converter(*types: str) -> Callable[[Converter], Converter]:
    """Register `fn` as the converter of each Caffe layer type in `types`."""

    def deco(fn: Converter) -> Converter:
        for t in types:
            if t in CONVERTERS:
                raise ValueError(f"Caffe layer type {t!r} registered twice")
            CONVERTERS[t] = fn
        return fn

    return deco


@dataclass
class Ctx:
    """State shared by the converters of one net."""

    g: Graph
    weights: WeightSource
    source: str
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    used_blobs: set[str] = field(default_factory=set)
    layer: Any = None
    out_names: list[str] = field(default_factory=list)
    shapes_used: set[str] = field(default_factory=set)

    def where(self) -> str:
        return f"{self.source}: layer '{self.layer.name}' ({self.layer.type})"

    def error(self, cls: type[Exception], message: str) -> Exception:
        """An lpdc error of class `cls` located at the current layer."""
        return cls(message, where=self.where())

    def blobs(self, specs: Sequence[BlobSpec]) -> list[np.ndarray]:
        """The current layer's learned blobs in Caffe layout (from the caffemodel or random)."""
        return self.weights.blobs(self.layer, list(specs), self.where())

    def const(self, data: np.ndarray, suffix: str) -> Value:
        return self.g.add_const(np.asarray(data, np.float32), f"{self.layer.name}.{suffix}")

    def emit(self, op: str, inputs: Sequence[Value | None], /, top: int | None = 0, **attrs: Any) -> Value:
        """Add one single-output node; `top=i` names it as the layer's i-th top, None as a helper."""
        if top is None:
            name = self.g.fresh_name(f"{self.layer.name}/{op}")
            return self.g.add_node(op, list(inputs), attrs, name=name, outputs=[name]).outputs[0]
        node_name = self.layer.name if top == 0 else f"{self.layer.name}:{top}"
        return self.g.add_node(op, list(inputs), attrs, name=node_name, outputs=[self.out_names[top]]).outputs[0]

    def emit_multi(self, op: str, inputs: Sequence[Value | None], /, **attrs: Any) -> list[Value]:
        """Add one node whose outputs are the layer's tops, in order."""
        node = self.g.add_node(op, list(inputs), attrs, name=self.layer.name, outputs=list(self.out_names))
        return list(node.outputs)

    def add_input(self, top: int, declared: Sequence[int] | None, skip_unused: bool = True) -> Value | None:
        """A graph input for the layer's `top`-th blob (shape from `shapes=` or the file); None when
        `skip_unused` and no layer reads it (a data layer's label, say)."""
        name = self.layer.top[top]
        if skip_unused and name not in self.used_blobs:
            return None
        if name in self.shapes:
            self.shapes_used.add(name)
            shape = self.shapes[name]
        elif declared:
            shape = tuple(int(d) for d in declared)
        else:
            raise self.error(LpdcParseError, f"the shape of input blob '{name}' is not in the file (a "
                                             f"{self.layer.type} layer reads it from its data source); give it with "
                                             f"shapes={{'{name}': [N, C, H, W]}}")
        if any(d <= 0 for d in shape):
            raise self.error(LpdcParseError, f"input blob '{name}' has a non-positive dimension {list(shape)}")
        return self.g.add_input(self.g.fresh_name(name), TensorType(tuple(shape), "f32"))
