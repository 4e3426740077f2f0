"""The Python API behind `lpdc.load`, `lpdc.compile` and `lpdc.save`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .backends.artifact import load_artifact, save_artifact
from .backends.target import Target
from .errors import LpdcError, LpdcParseError, LpdcTargetError
from .ir import Graph, parse


def load(path: str | os.PathLike[str], **options: Any) -> Graph:
    """Load a model into the IR, choosing the frontend by file type.

    `.onnx` (options: shapes=...), `.prototxt` (weights=..., random_weights=...), textual IR
    (`.lpir`, weights from a sibling `.npz`), an artifact directory, or `zoo:NAME` for a built-in
    model with deterministic random weights.
    """
    spec = str(path)
    if spec.startswith("zoo:"):
        from .tools.zoo import build

        return build(spec[4:], **options)
    p = Path(spec)
    if p.is_dir():
        return load_artifact(p)[0]
    if not p.exists():
        raise LpdcParseError("no such file", where=spec)
    suffix = p.suffix.lower()
    if suffix == ".onnx":
        from .frontends.onnx import load_onnx

        return load_onnx(p, **options)
    if suffix in (".prototxt", ".pbtxt") or p.name.endswith(".prototxt.txt"):
        from .frontends.caffe import load_caffe

        return load_caffe(p, **options)
    if suffix == ".lpir":
        import numpy as np

        npz = p.with_suffix(".npz")
        params = {}
        if npz.exists():
            with np.load(npz, allow_pickle=False) as f:
                params = {k: f[k] for k in f.files}
        return parse(p.read_text(), params, source=spec)
    raise LpdcParseError(f"unknown model file type {suffix!r} (expected .onnx, .prototxt, .lpir, an artifact "
                         "directory, or zoo:NAME)", where=spec)


def compile(graph: Graph, target: str | Target = "numpy", opt_level: int = 2,
            passes: Sequence[str] | None = None, **options: Any):
    """Optimise `graph` for `target` and return an Executable (`.run(inputs)`, `.graph`).

    `passes` replaces the opt level's pipeline when given; `instruments` watch every pass (see
    passes/instruments.py). The input graph is not modified.
    """
    from .passes.manager import PassManager, pipeline

    tgt = Target(target)
    if not isinstance(graph, Graph):
        raise LpdcError(f"compile takes an lpdc Graph (see lpdc.load), got {type(graph).__name__}")
    graph.verify()
    names = list(passes) if passes is not None else pipeline(opt_level)
    if tgt.backends == {"tvm"} and passes is None and "select-primitives" in names:
        # TVM kernels have their own implementations, all NHWC (no layout conversions between
        # them): instead of the NumPy primitives' PBQP, O3 times each conv's TVM kernel variants
        # and keeps the fastest (backends/tvm/variants.py), where the code runs on this host.
        names.remove("select-primitives")
        if [d.name for d in tgt.devices] == ["x86"]:
            options.setdefault("variants", "measure")
    manager = PassManager(names, dump=options.pop("dump_ir", ()), instruments=options.pop("instruments", ()))
    optimised = manager.run(graph.copy())
    backend = _backend_for(tgt)
    exe = backend(optimised, tgt, **options)
    exe.pass_records = manager.records
    return exe


def _backend_for(tgt: Target):
    if tgt.backends == {"numpy"}:
        from .backends.numpy import compile_numpy

        return lambda g, t, **kw: compile_numpy(g)
    if tgt.backends == {"tvm"}:
        from .backends.tvm import compile_tvm

        return lambda g, t, **kw: compile_tvm(g, t, **kw)
    if tgt.backends == {"opencl"} and len(tgt.devices) == 1:
        from .backends.opencl import compile_opencl

        return lambda g, t, **kw: compile_opencl(g, t.devices[0].name, **kw)
    if tgt.backends == {"opencl", "tvm"}:
        from .backends.hetero import compile_hetero

        return lambda g, t, **kw: compile_hetero(g, t, **kw)
    raise LpdcTargetError(f"no backend combines the devices of target {tgt.name!r}; use one CPU device, one "
                          "OpenCL device ('mali', 'opencl'), or one OpenCL device with CPU clusters ('mali+a72')",
                          where=tgt.name)


def save(graph: Graph, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Write `graph` as an artifact directory (textual IR + weights .npz), atomically."""
    return save_artifact(graph, path, meta)
