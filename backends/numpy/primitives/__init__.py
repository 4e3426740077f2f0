"""The catalog of layer primitives: several implementations of conv and fully_connected, each with
its input/output layout, applicability, workspace and cost-model numbers (LPDNN's "plugins").

`PRIMITIVES` maps a name to its `Primitive`; `primitives_for("conv")` lists those of one op.
The conv and fully_connected kernels dispatch on a node's `primitive` attribute (see dispatch.py);
primitive selection (passes/select) chooses one per node.

| name            | op   | layout  | applies to                                   |
|-----------------|------|---------|----------------------------------------------|
| im2col          | conv | NCHW    | every float conv (the reference)             |
| im2row          | conv | NHWC    | every float conv                             |
| gemm1x1         | conv | NCHW    | 1x1, no pad, no groups                       |
| gemm1x1_nhwc    | conv | NHWC    | 1x1, no pad, no groups                       |
| kn2row / kn2col | conv | NCHW / NHWC | no groups                                |
| direct          | conv | NCHW    | every float conv                             |
| depthwise(_nhwc)| conv | NCHW / NHWC | group == C                               |
| grouped         | conv | NCHW    | group > 1                                    |
| winograd_2x2/4x4| conv | NCHW    | 3x3, stride 1, dilation 1, no groups         |
| fft             | conv | NCHW    | no groups, kernel >= 3x3, small spectrum     |
| sparse_csr      | conv | NCHW    | no groups, weight density <= 0.5             |
| im2row_8c       | conv | NCHW8c  | no groups, C and O multiples of 8            |
| gemv / gemm     | fc   | -       | batch 1 / any                                |
| spmv            | fc   | -       | weight density <= 0.5                        |
| spmv_csc/coo/bsr| fc   | -       | weight density <= 0.5 (sparse_ext.py)        |
| sparse_direct   | conv | NCHW    | no groups, weight density <= 0.5            |
"""

from __future__ import annotations

import importlib

from ....ir import Node
from .base import (
    PRIMITIVES,
    ConvSpec,
    FCSpec,
    Primitive,
    Spec,
    clear_packed,
    get_primitive,
    packed_bytes,
    register,
    set_pack_limit,
)

__all__ = ["PRIMITIVES", "ConvSpec", "FCSpec", "Primitive", "Spec", "clear_packed", "get_primitive", "packed_bytes",
           "primitives_for", "register", "set_pack_limit"]


# Family modules in catalog order (the reference im2col first); importing one registers its entries.
_FAMILIES = ("lowering", "gemm1x1", "kn2", "direct", "grouped", "winograd", "fft", "sparse", "blocked", "fc",
             "sparse_ext")


def _load() -> None:
    for name in _FAMILIES:
        importlib.import_module(f"{__name__}.{name}")


def primitives_for(op: str | Node) -> list[Primitive]:
    """Every catalog entry for an op name ("conv", "fully_connected"), in registration order; for a
    node, those that apply to it as it is typed now (its input layout, its weights' geometry)."""
    _load()
    if isinstance(op, str):
        return [p for p in PRIMITIVES.values() if p.op == op]
    from .dispatch import conv_spec, fc_spec

    node = op
    if node.op == "conv":
        spec: Spec = conv_spec(node)
        layout = node.inputs[0].type.effective_layout
        return [p for p in primitives_for("conv") if p.in_layout == layout and p.applies(spec)]
    if node.op == "fully_connected":
        spec = fc_spec(node)
        return [p for p in primitives_for("fully_connected") if p.applies(spec)]
    return []


_load()
