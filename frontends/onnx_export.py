"""Export an IR graph back to ONNX: `export_onnx(graph, path_or_None) -> onnx.ModelProto`.

Works on any verified graph, also after passes: fused epilogues (bias, residual, activation)
become separate ONNX nodes, NHWC and blocked layouts get the Transposes/Reshapes that make the
ONNX model compute the same physical tensors, and quantized values are exported in QDQ form
(QuantizeLinear / DequantizeLinear carrying the scales from the IR types; integer convolutions
as ConvInteger). Value names are kept, so export -> import -> export is stable. Files are written
atomically (a temporary file renamed over the target).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from ..errors import LpdcLimitError, LpdcUnsupportedError
from ..ir import Graph, Node, Value, dtypes
from .onnx_tensors import IR_TO_ONNX

EXPORT_OPSET = 17  # raised per model when an op needs a newer form (AveragePool dilations, wrap pads...)
_IR_VERSION = {17: 8, 18: 8, 19: 9, 20: 9, 21: 10}
_PROTO_LIMIT = 2**31 - 1


def onnx_elem(dtype: str) -> int:
    """ONNX element type storing IR dtype `dtype` (fixed point is stored as its integer type)."""
    return IR_TO_ONNX[dtypes.from_numpy(dtypes.to_numpy(dtype))]


class OnnxBuilder:
    """Collects ONNX nodes and initializers for one graph; emitters call `node` and `const`."""

    def __init__(self, graph: Graph) -> None:
        import onnx

        self.graph = graph
        # Built in place: copying a GraphProto of VGG-16 size costs seconds.
        self.model = onnx.ModelProto()
        self.proto = self.model.graph
        self.data: list[np.ndarray] = []
        self.opset = EXPORT_OPSET
        self._used = {v.name for v in graph.values()}
        self._node_names: set[str] = set()
        self._count = 0

    def fresh(self, base: str) -> str:
        """A name used by no IR value and no earlier ONNX name."""
        name = base
        while name in self._used:
            self._count += 1
            name = f"{base}__{self._count}"
        self._used.add(name)
        return name

    def require_opset(self, version: int) -> None:
        self.opset = max(self.opset, version)

    def node(self, op_type: str, inputs: Sequence[str | None], outputs: Sequence[str] | str | None = None,
             name: str | None = None, **attrs: Any) -> str:
        """Add an ONNX node; returns its (first) output name (fresh unless given)."""
        from onnx import helper

        if outputs is None:
            outputs = [self.fresh(f"{name or op_type}/{op_type}")]
        elif isinstance(outputs, str):
            outputs = [outputs]
        ins = ["" if i is None else i for i in inputs]
        while ins and ins[-1] == "":
            ins.pop()
        clean = {k: v for k, v in attrs.items() if v is not None}
        node_name = base = name or outputs[0]
        while node_name in self._node_names:  # ONNX Runtime requires unique node names
            self._count += 1
            node_name = f"{base}__{self._count}"
        self._node_names.add(node_name)
        self.proto.node.append(helper.make_node(op_type, ins, list(outputs), name=node_name, **clean))
        return outputs[0]

    def const(self, data: np.ndarray | float | Sequence[Any], base: str, dtype: np.dtype | type | None = None) -> str:
        """An initializer holding `data` (cast to `dtype` when given)."""
        name = self.fresh(base)
        self.initializer(np.asarray(data, dtype=dtype), name)
        return name

    def initializer(self, arr: np.ndarray, name: str) -> None:
        """Declare an initializer; its bytes are attached by `attach_data` (inline or external)."""
        t = self.proto.initializer.add()
        t.name = name
        t.data_type = IR_TO_ONNX[dtypes.from_numpy(arr.dtype)]
        t.dims.extend(arr.shape)
        self.data.append(np.asarray(arr, dtype=arr.dtype.newbyteorder("<"), order="C"))

    def attach_data(self, external: Path | None, threshold: int = 1024) -> None:
        """Put initializer bytes in the protobuf, or (from `threshold` bytes) in the file `external`
        written straight from the arrays, never copied through the protobuf."""
        inits = self.proto.initializer
        if external is None:
            for t, arr in zip(inits, self.data, strict=True):
                t.raw_data = arr.tobytes()
            return
        with _atomic_file(external) as f:
            offset = 0
            for t, arr in zip(inits, self.data, strict=True):
                if arr.nbytes < threshold:
                    t.raw_data = arr.tobytes()
                    continue
                pad = -offset % 64  # aligned, so the data can be memory-mapped
                f.write(b"\0" * pad)
                f.write(memoryview(arr).cast("B"))
                for key, value in (("location", external.name), ("offset", str(offset + pad)),
                                   ("length", str(arr.nbytes))):
                    e = t.external_data.add()
                    e.key, e.value = key, value
                t.data_location = 1  # TensorProto.EXTERNAL
                offset += pad + arr.nbytes

    def ints(self, values: Sequence[int], base: str) -> str:
        return self.const(np.asarray(list(values), np.int64), base)


def export_onnx(graph: Graph, path: str | os.PathLike[str] | None = None, *,
                external_data: bool | None = None) -> Any:
    """The ONNX ModelProto of `graph`; also written (atomically) to `path` when given.

    With `external_data` (default: only when the model would pass protobuf's 2 GiB limit) the
    weights go to `<file>.data` beside the model, which then refers to them by relative path.
    """
    from onnx import helper

    from .onnx_export_ops import EMITTERS, LAYOUT_SENSITIVE, emit_with_layout

    graph.verify()
    b = OnnxBuilder(graph)
    shared: dict[str, str] = {}
    for node in graph.nodes:
        if node.op == "const":
            _export_const(b, node, shared)
            continue
        emitter = EMITTERS.get(node.op)
        if emitter is None:
            raise LpdcUnsupportedError(f"op '{node.op}' cannot be exported to ONNX", where=f"node '{node.name}'")
        if node.op in LAYOUT_SENSITIVE:
            emit_with_layout(b, node, emitter)
        else:
            emitter(b, node, [_name(v) for v in node.inputs], [v.name for v in node.outputs])
    model = b.model
    model.graph.name = graph.name
    model.graph.input.extend([_info(v) for v in graph.inputs])
    model.graph.output.extend([_info(v) for v in graph.outputs])
    model.opset_import.append(helper.make_opsetid("", b.opset))
    model.producer_name = "lpdc"
    model.ir_version = _IR_VERSION.get(b.opset, 10)
    p = None if path is None else Path(path)
    if p is not None and (external_data or (external_data is None and sum(a.nbytes for a in b.data) > _PROTO_LIMIT)):
        b.attach_data(p.with_name(p.name + ".data"))
    else:
        b.attach_data(None)
    if p is not None:
        _write_atomic(model, p)
    return model


def _name(v: Value | None) -> str | None:
    return None if v is None else v.name


def _info(v: Value) -> Any:
    from onnx import helper

    return helper.make_tensor_value_info(v.name, onnx_elem(v.type.dtype), list(v.type.shape))


def _export_const(b: OnnxBuilder, node: Node, shared: dict[str, str]) -> None:
    """Constants become initializers; a parameter shared by several constants is stored once."""
    param = node.attrs["param"]
    out = node.output.name
    if param in shared:
        b.node("Identity", [shared[param]], out, name=node.name)
        return
    b.initializer(b.graph.params[param], out)
    shared[param] = out


def _write_atomic(model: Any, path: Path) -> None:
    size = model.ByteSize()
    if size > _PROTO_LIMIT:
        raise LpdcLimitError(f"model is {size} bytes, over protobuf's 2 GiB limit", where=str(path))
    with _atomic_file(path) as f:
        f.write(model.SerializeToString())


@contextlib.contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at `path` only once fully written (temporary file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
