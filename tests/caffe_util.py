"""Helpers for the Caffe frontend tests: write a prototxt (and caffemodel) and run it on NumPy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from lpdc.backends.numpy import compile_numpy
from lpdc.frontends.caffe import load_caffe
from lpdc.frontends.caffe.reader import read_prototxt
from lpdc.frontends.caffe.upgrade import upgrade_net
from lpdc.ir import Graph
from lpdc.tools.caffe_weights import write_caffemodel

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "models" / "caffe"


def write_net(tmp_path: Path, text: str, name: str = "net.prototxt") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def load_text(tmp_path: Path, text: str, blobs: dict[str, list[Any]] | None = None, **options: Any) -> Graph:
    """Load prototxt text; `blobs` (layer name -> arrays in Caffe layout) become its caffemodel."""
    proto = write_net(tmp_path, text)
    if blobs is not None:
        model = tmp_path / "net.caffemodel"
        net = upgrade_net(read_prototxt(proto), str(proto))
        write_caffemodel(net, {k: [np.asarray(a, np.float32) for a in v] for k, v in blobs.items()}, model)
        options["weights"] = model
    return load_caffe(proto, **options)


def run(g: Graph, **inputs: Any) -> dict[str, np.ndarray]:
    return compile_numpy(g).run({k: np.asarray(v, np.float32) for k, v in inputs.items()})


def input_layer(shapes: dict[str, list[int]]) -> str:
    """An Input layer producing the given blobs."""
    tops = "".join(f' top: "{n}"' for n in shapes)
    dims = "".join("shape { " + " ".join(f"dim: {d}" for d in s) + " } " for s in shapes.values())
    return f'layer {{ name: "input" type: "Input"{tops} input_param {{ {dims}}} }}\n'
