"""Grouped convolution, one group at a time: an im2col GEMM per group, written into its slice
of the output.

im2col batches all groups into one matmul call; this primitive trades that single call for
smaller, cache-resident working sets (one group's patch matrix at a time), which wins when
groups are few and large and loses to per-call overhead when there are many small ones.
"""

from __future__ import annotations

import numpy as np

from ..im2col import conv2d_im2col
from .base import ConvSpec, Primitive, register


def _applies(s: ConvSpec) -> bool:
    return s.is_float and s.group > 1


def _workspace(s: ConvSpec) -> int:
    return s.n * s.cg * s.kh * s.kw * s.ho * s.wo * s.itemsize


def _traffic(s: ConvSpec) -> float:
    return s.in_bytes + 2 * s.group * _workspace(s) + s.w_bytes + 2 * s.out_bytes


def _run(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    out = np.empty((s.n, s.o, s.ho, s.wo), x.dtype)
    cg, og = s.cg, s.og
    for g in range(s.group):
        out[:, g * og:(g + 1) * og] = conv2d_im2col(x[:, g * cg:(g + 1) * cg], w[g * og:(g + 1) * og],
                                                    s.stride, s.pad, s.dilation, 1)
    return out


GROUPED = register(Primitive(
    "grouped", "conv", "grouped", "NCHW", "NCHW", applies=_applies, run=_run,
    workspace=_workspace, traffic=_traffic, calls=lambda s: 3 * s.group, efficiency=0.45,
    doc="one im2col GEMM per group (NCHW)"))
