"""The per-node conversion context and the table of ONNX op converters.

A converter is `fn(ctx) -> list[Value | None]` (one entry per ONNX output) registered with
`@converter("OpType", static=(...))`. `static` lists the input slots that must be known at import
(shapes, axes, pads...): the converter reads them with `ctx.static(i)`, and the ONNX backend uses
the table to turn graph inputs that feed those slots into constants.

Every IR node a converter emits is type-checked against the element limit at once and, when all
its inputs are constants (or it is `shape`, which needs only types), evaluated with the NumPy
reference kernel and replaced by a constant: shape arithmetic folds away at import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import LpdcUnsupportedError
from ..ir import Graph, Node, Value, dtypes
from ..ir.registry import PURE
from ..ir.types import QuantParams
from .onnx_tensors import check_elements

Converter = Callable[["Ctx"], Sequence[Value | None]]
CONVERTERS: dict[str, Converter] = {}
STATIC_INPUTS: dict[str, frozenset[int]] = {}

# Folding these would turn quantized tensors back into floats and lose the quantization structure.
_NO_FOLD = frozenset({"quantize", "dequantize", "requantize"})


def converter(*ops: str, static: Sequence[int] = ()) -> Callable[[Converter], Converter]:
    """Register `fn` as the converter of each ONNX op type in `ops`."""

    def deco(fn: Converter) -> Converter:
        for op in ops:
            CONVERTERS[op] = fn
            STATIC_INPUTS[op] = frozenset(static)
        return fn

    return deco


class Ctx:
    """What a converter sees: the ONNX node, its inputs as IR values, and helpers to emit IR."""

    def __init__(self, g: Graph, values: dict[str, Value], opset: int, node: Any, where: str,
                 max_elements: int) -> None:
        from onnx import helper

        self.g = g
        self.values = values
        self.opset = opset
        self.node = node
        self.op_type: str = node.op_type
        self.where = where
        self.max_elements = max_elements
        self.name: str = node.name or (node.output[0] if node.output else node.op_type)
        self.attrs: dict[str, Any] = {a.name: helper.get_attribute_value(a) for a in node.attribute}

    # ---- reading the ONNX node ------------------------------------------------------------
    def attr(self, key: str, default: Any = None) -> Any:
        v = self.attrs.get(key, default)
        return v.decode() if isinstance(v, bytes) else v

    def ints(self, key: str, default: Sequence[int] | None = None) -> list[int] | None:
        v = self.attrs.get(key)
        return [int(x) for x in v] if v is not None else (None if default is None else list(default))

    def has_input(self, i: int) -> bool:
        return i < len(self.node.input) and self.node.input[i] != ""

    def input(self, i: int) -> Value | None:
        """Input i as an IR value, or None when absent."""
        return self.values[self.node.input[i]] if self.has_input(i) else None

    def inp(self, i: int) -> Value:
        v = self.input(i)
        if v is None:
            raise LpdcUnsupportedError(f"required input {i} of {self.op_type} is missing")
        return v

    def inputs(self) -> list[Value]:
        return [self.values[n] for n in self.node.input if n != ""]

    def const(self, i: int) -> np.ndarray | None:
        """The data of input i when it is a constant, else None."""
        return self.g.const_data(self.input(i))

    def static(self, i: int, what: str) -> np.ndarray | None:
        """Input i, which must be known at import: its data, or None when absent."""
        if not self.has_input(i):
            return None
        data = self.const(i)
        if data is None:
            raise LpdcUnsupportedError(f"input {i} ({what}) of {self.op_type} must be a constant or computable at "
                                       f"import (it is '{self.node.input[i]}')")
        return data

    def static_ints(self, i: int, what: str) -> list[int] | None:
        data = self.static(i, what)
        return None if data is None else [int(x) for x in np.asarray(data).reshape(-1).tolist()]

    @property
    def n_outputs(self) -> int:
        return len(self.node.output)

    def out_name(self, i: int = 0) -> str:
        return self.node.output[i]

    def output_used(self, i: int) -> bool:
        return i < len(self.node.output) and self.node.output[i] != ""

    # ---- emitting IR ----------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[Value | None], attrs: dict[str, Any] | None = None, *,
             out: int | None = None, n_out: int = 1) -> list[Value]:
        """Add an IR node; `out=i` names its (first) output after ONNX output i. Folds constants."""
        if out is not None:
            names = [self.node.output[out + k] or f"{self.name}/{op}:{k}" for k in range(n_out)]
        else:
            names = [self.g.fresh_name(f"{self.out_name(0) if self.node.output else self.name}/{op}")]
            names += [f"{names[0]}:{k}" for k in range(1, n_out)]
        node = self.g.add_node(op, inputs, attrs or {}, name=self.name if out is not None else names[0],
                               outputs=names)
        for v in node.outputs:
            check_elements(v.type.shape, self.max_elements, f"value '{v.name}'", self.where)
        return self._maybe_fold(node)

    def op(self, op: str, *inputs: Value | None, out: int | None = None, **attrs: Any) -> Value:
        """Single-output shorthand for `emit`."""
        return self.emit(op, inputs, attrs, out=out)[0]

    def constant(self, data: np.ndarray | float | int | Sequence[Any], hint: str, dtype: str | None = None,
                 quant: QuantParams | None = None) -> Value:
        arr = np.asarray(data)
        if dtype is None:
            dtype = dtypes.from_numpy(arr.dtype)
        return self.g.add_const(arr, f"{self.name}/{hint}", dtype, quant=quant)

    def _maybe_fold(self, node: Node) -> list[Value]:
        g = self.g
        if node.op in _NO_FOLD or not node.schema.has(PURE):
            return list(node.outputs)
        args = [None if v is None else g.const_data(v) for v in node.inputs]
        if node.op != "shape" and any(v is not None and a is None for v, a in zip(node.inputs, args, strict=True)):
            return list(node.outputs)
        from ..backends.numpy.kernels import get_kernel

        kernel = get_kernel(node.op)
        if kernel is None:
            return list(node.outputs)
        with np.errstate(all="ignore"):
            results = kernel(node, args, g)
        outs = [(v.name, v.type) for v in node.outputs]
        g.erase(node)
        return [g.add_const(np.asarray(r).reshape(t.shape), name, t.dtype, quant=t.quant)
                for (name, t), r in zip(outs, results, strict=True)]
