"""Read the two Caffe files: a .prototxt (text NetParameter) and a .caffemodel (binary NetParameter).

The prototxt is parsed with protobuf's text_format against lpdc's schema subset; a field the
schema does not know (a fork extension) is warned about and skipped, any other syntax error is an
LpdcParseError naming the file, line and column. The caffemodel is decoded through a weights-only
view of NetParameter (see caffe.proto), in V2 (`layer`, field 100), V1 (`layers`, field 2) and V0
(nested `layer`) form alike, into `{layer name: CaffeLayerBlobs}`.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from google.protobuf import message as pb_message
from google.protobuf import text_format

from ...errors import LpdcLimitError, LpdcParseError
from ...ir import limits
from .schema import message_class, new
from .tables import V0_TO_V1, V1_TO_V2


@dataclass
class CaffeLayerBlobs:
    """The learned blobs of one layer of a caffemodel, in file order and file shape."""

    name: str
    type: str
    blobs: list[np.ndarray] = field(default_factory=list)


def read_prototxt(path: str | Path) -> Any:
    """Parse a text NetParameter; unknown fields are warned about and skipped."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise LpdcParseError(f"cannot read the prototxt: {e}", where=str(p)) from None
    return parse_prototxt(text, str(p))


def parse_prototxt(text: str, source: str = "<prototxt>") -> Any:
    """Parse prototxt text into a `caffe.NetParameter` (errors name `source`, line and column)."""
    prescan_prototxt(text, source)
    net = new("NetParameter")
    try:
        text_format.Parse(text, net)
        return net
    except text_format.ParseError as e:
        line, col, msg = _location(e)
        unknown = re.search(r'has no field named "([^"]+)"', msg)
        if unknown is None:
            raise LpdcParseError(f"malformed prototxt: {msg}{_near_layer(text, line)}",
                                 where=f"{source}:{line}:{col}") from None
        container = re.search(r'Message type "caffe\.(\w+)"', msg)
        warnings.warn(f"{source}:{line}:{col}: field '{unknown.group(1)}' is not in Caffe's schema"
                      f"{' (in ' + container.group(1) + ')' if container else ''}{_near_layer(text, line)}; "
                      "skipping it and any other unknown field", stacklevel=3)
    net = new("NetParameter")
    try:
        text_format.Parse(text, net, allow_unknown_field=True)
    except text_format.ParseError as e:
        line, col, msg = _location(e)
        raise LpdcParseError(f"malformed prototxt: {msg}{_near_layer(text, line)}",
                             where=f"{source}:{line}:{col}") from None
    return net


_LAYER_OPEN = re.compile(r"\b(layers?)\s*:?\s*[{<]")
_BRACE = re.compile(r"[{}<>]")


def prescan_prototxt(text: str, source: str) -> None:
    """Refuse, before protobuf's parser runs, text with more layer blocks than `max_nodes` (parsing
    10^6 layers would take minutes and gigabytes) or blocks nested deeper than `max_depth` (the
    text parser recurses per level and would overflow Python's stack)."""
    lim = limits.current()
    counts = {"layer": 0, "layers": 0}
    for m in _LAYER_OPEN.finditer(text):
        counts[m.group(1)] += 1
        if max(counts.values()) > lim.max_nodes:  # V0 nets nest `layer` in `layers`: one per layer
            raise LpdcLimitError(f"more than {lim.max_nodes} layer blocks, over the node limit (raise max_nodes "
                                 "to allow)", where=source)
    depth = 0
    for m in _BRACE.finditer(text):
        depth += 1 if m.group() in "{<" else -1
        if depth > lim.max_depth:
            line = text.count("\n", 0, m.start()) + 1
            raise LpdcLimitError(f"blocks nested deeper than {lim.max_depth} levels (raise max_depth to allow)",
                                 where=f"{source}:{line}")


def _location(e: text_format.ParseError) -> tuple[int, int, str]:
    """(line, column, message) of a text_format error; the message loses its `L:C :` prefix."""
    msg = str(e)
    m = re.match(r"^(\d+):(\d+) : (.*)$", msg, re.S)
    line = e.GetLine() if hasattr(e, "GetLine") and e.GetLine() is not None else None
    col = e.GetColumn() if hasattr(e, "GetColumn") and e.GetColumn() is not None else None
    if m:
        line = line if line is not None else int(m.group(1))
        col = col if col is not None else int(m.group(2))
        msg = m.group(3)
    return (line or 0), (col or 0), msg


def _near_layer(text: str, line: int) -> str:
    """' (in layer "X")' for the last layer name at or before `line`, to help find the spot."""
    head = "\n".join(text.splitlines()[:max(line, 0)])
    names = re.findall(r'^\s*name\s*:\s*"([^"]*)"', head, re.M)
    blocks = re.findall(r"^\s*layers?\s*[:{]", head, re.M)
    return f" (in or after layer '{names[-1]}')" if names and blocks else ""


# ---- caffemodel ------------------------------------------------------------------------------
def read_caffemodel(path: str | Path) -> dict[str, CaffeLayerBlobs]:
    """The blobs of every layer of a binary caffemodel (V2, V1 or V0 layers), keyed by layer name."""
    p = Path(path)
    try:
        # A caffemodel is its weights plus layer definitions; float64 blobs take twice the bytes.
        limits.check_weight_bytes(p.stat().st_size // 2, where=str(p))
        data = p.read_bytes()
    except OSError as e:
        raise LpdcParseError(f"cannot read the caffemodel: {e}", where=str(p)) from None
    try:
        net = message_class("NetWeights").FromString(data)
    except pb_message.DecodeError:
        raise LpdcParseError(f"truncated or corrupt caffemodel ({len(data)} bytes): not a binary Caffe "
                             "NetParameter", where=str(p)) from None
    layers = _layers(net)
    _check_declared_size(layers, str(p))
    out: dict[str, CaffeLayerBlobs] = {}
    for name, type_, blobs in layers:
        arrays = [blob_array(b, f"{p}: layer '{name}' blob {i}") for i, b in enumerate(blobs)]
        if name in out and out[name].blobs and arrays:
            warnings.warn(f"{p}: layer name '{name}' appears twice; using its first blobs", stacklevel=2)
            continue
        if name not in out or not out[name].blobs:
            out[name] = CaffeLayerBlobs(name, type_, arrays)
    return out


def _layers(net: Any) -> list[tuple[str, str, list[Any]]]:
    """(name, V2 type, blobs) of each layer, whatever the generation of the file."""
    found = [(lw.name, lw.type, list(lw.blobs)) for lw in net.layer]
    for v1 in net.layers:
        if v1.HasField("layer"):  # V0 wrapped in V1: name, type and blobs live in the inner block
            v0 = v1.layer
            v1_type = V0_TO_V1.get(v0.type, "")
            found.append((v0.name or v1.name, V1_TO_V2.get(v1_type, v0.type), list(v0.blobs) + list(v1.blobs)))
        else:
            enum = message_class("V1LayerParameter").DESCRIPTOR.enum_types_by_name["LayerType"]
            v1_name = enum.values_by_number[v1.type].name if v1.type in enum.values_by_number else ""
            found.append((v1.name, V1_TO_V2.get(v1_name, f"V1:{v1.type}"), list(v1.blobs)))
    return found


def _check_declared_size(layers: list[tuple[str, str, list[Any]]], where: str) -> None:
    """Node count and total float32 weight bytes from the declared blob shapes, before decoding."""
    limits.check_nodes(len(layers), where=where)
    total = 0
    for name, _, blobs in layers:
        for i, b in enumerate(blobs):
            shape = blob_shape(b)
            if any(d < 0 for d in shape):
                raise LpdcParseError(f"blob has a negative dimension {list(shape)}", where=f"{where}: layer '{name}' "
                                     f"blob {i}")
            limits.check_elements(math.prod(shape), f"blob {i} of layer '{name}'", where=where)
            total += 4 * math.prod(shape)
    limits.check_weight_bytes(total, where=where)


def blob_shape(blob: Any) -> tuple[int, ...]:
    """A BlobProto's shape: the N-D `shape`, else legacy (num, channels, height, width)."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim)
    if any(blob.HasField(f) for f in ("num", "channels", "height", "width")):
        return (blob.num, blob.channels, blob.height, blob.width)
    return ()


def blob_array(blob: Any, where: str) -> np.ndarray:
    """The values of a BlobBytes (or BlobProto) as a float32 array in the blob's own shape."""
    shape = blob_shape(blob)
    want = math.prod(shape) if shape else None  # exact: np.prod would wrap around on huge dims
    values = _packed_values(blob)
    if values.size == 0 or (want is not None and values.size != want):
        unpacked = _unpacked_values(blob, where)  # elements written one by one, not packed
        values = unpacked if unpacked.size else values
    if want is None:
        shape = (values.size,) if values.size != 1 else ()
    elif values.size != want:
        raise LpdcParseError(f"blob holds {values.size} values but its shape {list(shape)} needs {want}", where=where)
    return values.astype(np.float32, copy=False).reshape(shape)


def _packed_values(blob: Any) -> np.ndarray:
    """Values from packed fields; a BlobBytes holds them as raw little-endian bytes."""
    if blob.DESCRIPTOR.name != "BlobBytes":
        d = np.asarray(blob.double_data, np.float64)
        return d if d.size else np.asarray(blob.data, np.float32)
    if blob.double_data:
        raw8 = b"".join(blob.double_data)
        return np.frombuffer(raw8, "<f8") if len(raw8) % 8 == 0 else np.zeros(0, np.float64)
    raw = b"".join(blob.data)
    return np.frombuffer(raw, "<f4") if len(raw) % 4 == 0 else np.zeros(0, np.float32)


def _unpacked_values(blob: Any, where: str) -> np.ndarray:
    """Re-decode with the full BlobProto, which accepts unpacked repeated floats too."""
    try:
        full = message_class("BlobProto").FromString(blob.SerializeToString())
    except pb_message.DecodeError:
        raise LpdcParseError("corrupt blob", where=where) from None
    d = np.asarray(full.double_data, np.float64)
    return d if d.size else np.asarray(full.data, np.float32)
