"""Write .caffemodel files: deterministic random weights for any prototxt (tests, demos).

    random_caffemodel("deploy.prototxt", "net.caffemodel", seed=0)
    python -m lpdc.tools.caffe_weights deploy.prototxt net.caffemodel [--seed 0] [--shape data=1,3,224,224]

The file is what Caffe writes: a binary NetParameter whose layers carry their full definitions
and, for layers with learned parameters, one BlobProto per blob (N-D `shape`, packed float32
`data`). Options write the older encodings a reader must also accept: legacy 4-D
num/channels/height/width shapes, float64 `double_data`, or V1 `layers` (field 2) entries.
The blobs are exactly those `lpdc.load(prototxt, random_weights=True, seed=seed)` generates.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LpdcError
from ..frontends.caffe import load_caffe_parts
from ..frontends.caffe.schema import message_class
from ..frontends.caffe.tables import V1_TO_V2


def blob_message(array: np.ndarray, legacy_shape: bool = False, double: bool = False) -> Any:
    """A BlobProto (as lpdc's wire-compatible BlobBytes view) holding `array`."""
    blob = message_class("BlobBytes")()
    a = np.asarray(array)
    if legacy_shape:
        if a.ndim > 4:
            raise LpdcError(f"a legacy 4-D blob shape cannot hold shape {list(a.shape)}")
        blob.num, blob.channels, blob.height, blob.width = (1,) * (4 - a.ndim) + a.shape
    else:
        blob.shape.SetInParent()  # present even for a 0-d blob (PReLU's channel_shared slope)
        blob.shape.dim.extend(int(d) for d in a.shape)
    if double:
        blob.double_data.append(np.ascontiguousarray(a, "<f8").tobytes())
    else:
        blob.data.append(np.ascontiguousarray(a, "<f4").tobytes())
    return blob


def caffemodel_bytes(net: Any, blobs: Mapping[str, Sequence[np.ndarray]], legacy_shape: bool = False,
                     double: bool = False, v1: bool = False) -> bytes:
    """Serialise `net`'s layers (a V2 NetParameter) with `blobs` by layer name, as a caffemodel."""
    out = message_class("NetWeights")(name=net.name)
    v1_types = {v2: v1_name for v1_name, v2 in V1_TO_V2.items()}
    enum = message_class("V1LayerParameter").DESCRIPTOR.enum_types_by_name["LayerType"]
    for layer in net.layer:
        arrays = blobs.get(layer.name, ())
        if v1:
            type_name = v1_types.get(layer.type)
            if type_name is None and not arrays:
                continue  # e.g. Input: V1 nets declared inputs outside the layer list
            if type_name is None:
                raise LpdcError(f"layer type '{layer.type}' has no V1 enum; cannot write a V1 caffemodel",
                                where=f"layer '{layer.name}'")
            entry = out.layers.add(name=layer.name)
            entry.type = enum.values_by_name[type_name].number
        else:
            # Parsing the full definition into the view keeps every field (as unknown fields).
            entry = out.layer.add()
            entry.MergeFromString(layer.SerializeToString())
        for a in arrays:
            entry.blobs.append(blob_message(a, legacy_shape, double))
    return out.SerializeToString()


def write_caffemodel(net: Any, blobs: Mapping[str, Sequence[np.ndarray]], path: str | os.PathLike[str],
                     **options: bool) -> Path:
    """Write a caffemodel atomically (a temporary file renamed into place)."""
    target = Path(path)
    data = caffemodel_bytes(net, blobs, **options)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def random_caffemodel(prototxt: str | os.PathLike[str], path: str | os.PathLike[str], seed: int = 0,
                      shapes: Mapping[str, Sequence[int]] | None = None, **options: bool) -> Path:
    """Write deterministic random weights for every learned blob of `prototxt` (TEST phase)."""
    _, net, source = load_caffe_parts(prototxt, random_weights=True, seed=seed, shapes=shapes, record=True)
    return write_caffemodel(net, source.issued, path, **options)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lpdc.tools.caffe_weights", description=__doc__.splitlines()[0])
    ap.add_argument("prototxt")
    ap.add_argument("output", help="the .caffemodel to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", action="append", default=[], metavar="NAME=N,C,H,W",
                    help="input blob shape (needed for training nets' Data layers)")
    ap.add_argument("--legacy-shape", action="store_true", help="write num/channels/height/width shapes")
    ap.add_argument("--v1", action="store_true", help="write V1 `layers` entries (name, enum type, blobs)")
    args = ap.parse_args(argv)
    shapes = {k: [int(d) for d in v.split(",")] for k, v in (s.split("=", 1) for s in args.shape)}
    try:
        random_caffemodel(args.prototxt, args.output, args.seed, shapes, legacy_shape=args.legacy_shape, v1=args.v1)
    except LpdcError as e:
        ap.exit(1, f"error: {e}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
