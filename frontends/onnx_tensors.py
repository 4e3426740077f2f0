"""Reading ONNX files and tensors safely: parse errors, element-count limits, data-size checks,
and external data that must stay inside the model's directory.

Every check happens before any array is allocated, so a hostile or corrupt file costs at most a
parse, never a multi-gigabyte allocation or a read outside the model's folder.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from ..errors import LpdcLimitError, LpdcParseError, LpdcUnsupportedError

DEFAULT_MAX_ELEMENTS = 2**31

# ONNX TensorProto element type -> IR dtype name.
ONNX_TO_IR: dict[int, str] = {
    1: "f32", 2: "u8", 3: "i8", 4: "u16", 5: "i16", 6: "i32", 7: "i64", 9: "bool", 10: "f16", 11: "f64",
    12: "u32", 13: "u64",
}
IR_TO_ONNX: dict[str, int] = {v: k for k, v in ONNX_TO_IR.items()}


def ir_dtype(elem_type: int, where: str) -> str:
    """The IR dtype of an ONNX element type, or LpdcUnsupportedError naming it."""
    if elem_type in ONNX_TO_IR:
        return ONNX_TO_IR[elem_type]
    import onnx

    name = onnx.TensorProto.DataType.Name(elem_type) if elem_type in onnx.TensorProto.DataType.values() else elem_type
    raise LpdcUnsupportedError(f"element type {name} is not supported (supported: "
                               f"{', '.join(sorted(ONNX_TO_IR.values()))})", where=where)


def check_elements(shape: list[int] | tuple[int, ...], max_elements: int, what: str, where: str) -> None:
    """Refuse a shape whose element count exceeds `max_elements` (computed without allocating)."""
    if any(d < 0 for d in shape):
        raise LpdcParseError(f"{what} has a negative dimension {list(shape)}", where=where)
    n = math.prod(int(d) for d in shape)
    if n > max_elements:
        raise LpdcLimitError(f"{what} of shape {list(shape)} has {n} elements, over the limit of {max_elements} "
                             "(raise max_elements= to allow it)", where=where)


def read_model(path: Path):
    """Parse an ONNX file into a ModelProto; a truncated or non-ONNX file is an LpdcParseError."""
    import onnx
    from google.protobuf.message import DecodeError

    where = str(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise LpdcParseError(f"cannot read file: {e.strerror or e}", where=where) from None
    if not data:
        raise LpdcParseError("file is empty, not an ONNX model", where=where)
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise LpdcParseError(f"not a valid ONNX model (truncated or not ONNX: {e})", where=where) from None
    check_model_header(model, where)
    return model


def check_model_header(model, where: str) -> None:
    """Protobuf parses many byte strings; a real ONNX model has an IR version, a graph and an opset."""
    if model.ir_version <= 0 or not model.HasField("graph") or not model.opset_import:
        raise LpdcParseError("not an ONNX model (no IR version, graph or opset import; truncated or another "
                             "format?)", where=where)


def tensor_to_array(t, base_dir: Path | None, max_elements: int, where: str) -> np.ndarray:
    """The data of a TensorProto, after checking its size, dtype and (external) data location."""
    from onnx import numpy_helper

    dims = [int(d) for d in t.dims]
    what = f"tensor '{t.name}'"
    check_elements(dims, max_elements, what, where)
    dtype = ir_dtype(t.data_type, f"{where}: {what}")
    if t.HasField("data_location") and t.data_location == 1:  # TensorProto.EXTERNAL
        return _read_external(t, dims, dtype, base_dir, where)
    _check_inline_size(t, dims, dtype, where)
    try:
        arr = numpy_helper.to_array(t)
    except Exception as e:  # a malformed tensor protobuf: name it, never leak the traceback
        raise LpdcParseError(f"{what} cannot be decoded: {e}", where=where) from None
    return np.ascontiguousarray(arr).reshape(dims)


def _itemsize(dtype: str) -> int:
    from ..ir import dtypes

    return dtypes.itemsize(dtype)


def _check_inline_size(t, dims: list[int], dtype: str, where: str) -> None:
    n = math.prod(dims)
    if t.raw_data:
        want = n * _itemsize(dtype)
        if len(t.raw_data) != want:
            raise LpdcParseError(f"tensor '{t.name}' of shape {dims} ({dtype}) needs {want} bytes of data, "
                                 f"has {len(t.raw_data)}", where=where)
        return
    counts = {"float_data": len(t.float_data), "int32_data": len(t.int32_data), "int64_data": len(t.int64_data),
              "double_data": len(t.double_data), "uint64_data": len(t.uint64_data)}
    have = max(counts.values())
    if have != n:
        raise LpdcParseError(f"tensor '{t.name}' of shape {dims} needs {n} values, has {have}", where=where)


def _read_external(t, dims: list[int], dtype: str, base_dir: Path | None, where: str) -> np.ndarray:
    """Read external data, refusing any location that leaves the model's directory."""
    info = {e.key: e.value for e in t.external_data}
    what = f"tensor '{t.name}'"
    location = info.get("location", "")
    if base_dir is None:
        raise LpdcParseError(f"{what} uses external data but the model was not loaded from a file", where=where)
    if not location or os.path.isabs(location) or Path(location).drive:
        raise LpdcParseError(f"{what}: external data location {location!r} must be a relative path inside "
                             "the model's directory", where=where)
    root = base_dir.resolve()
    target = (root / location).resolve()
    if target != root and root not in target.parents:
        raise LpdcParseError(f"{what}: external data location {location!r} escapes the model's directory; "
                             "refused", where=where)
    try:
        offset = int(info.get("offset", "0"))
        want = math.prod(dims) * _itemsize(dtype)
        length = int(info.get("length", str(want)))
    except ValueError:
        raise LpdcParseError(f"{what}: bad external data offset/length {info}", where=where) from None
    if length != want or offset < 0:
        raise LpdcParseError(f"{what} of shape {dims} ({dtype}) needs {want} bytes, external data gives "
                             f"{length} at offset {offset}", where=where)
    if not target.is_file() or target.stat().st_size < offset + length:
        raise LpdcParseError(f"{what}: external data file {location!r} is missing or shorter than "
                             f"{offset + length} bytes", where=where)
    with open(target, "rb") as f:
        f.seek(offset)
        data = f.read(length)
    from ..ir import dtypes

    return np.frombuffer(data, dtype=dtypes.to_numpy(dtype).newbyteorder("<")).astype(
        dtypes.to_numpy(dtype)).reshape(dims)
