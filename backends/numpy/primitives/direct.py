"""Direct convolutions: no lowered matrix, the loop nest over kernel taps is kept.

direct (NCHW, any groups): for each kernel tap, contract the shifted input with that tap's
(O, C) weight slice and accumulate into the output; the two channel loops run in BLAS, the tap
loop in Python. Workspace: one shifted input plane.
depthwise / depthwise_nhwc (group == C, channel multiplier m = O/C): for each tap, a per-channel
scaled shifted plane is accumulated (no GEMM at all; memory-bound). NHWC keeps channels innermost
so the per-channel weights broadcast along the contiguous axis.
"""

from __future__ import annotations

import numpy as np

from .base import ConvSpec, Primitive, packed, register
from .views import pad_nchw, pad_nhwc, tap_slice, taps


def _shifted_bytes(s: ConvSpec) -> int:
    return s.n * s.c * s.ho * s.wo * s.itemsize


def _calls(s: ConvSpec) -> int:
    return 2 * s.kh * s.kw


def _direct_traffic(s: ConvSpec) -> float:
    return s.kh * s.kw * (2 * _shifted_bytes(s) + 2 * s.out_bytes) + s.in_bytes + s.w_bytes


def _run_direct(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    xp = pad_nchw(x, s.pad)
    g, og, cg = s.group, s.og, s.cg
    wt = packed(w, "direct", lambda: np.ascontiguousarray(
        w.reshape(g, og, cg, s.kh * s.kw).transpose(3, 0, 1, 2)))  # (taps, g, og, cg)
    out = np.zeros((s.n, g, og, s.ho * s.wo), x.dtype)
    for t, (i, j) in enumerate(taps(s)):
        rows, cols = tap_slice(s, i, j)
        xs = xp[:, :, rows, cols].reshape(s.n, g, cg, s.ho * s.wo)
        out += np.matmul(wt[t], xs)
    return out.reshape(s.n, s.o, s.ho, s.wo)


def _dw_applies(s: ConvSpec) -> bool:
    return s.is_float and s.is_depthwise


def _dw_flops(s: ConvSpec) -> float:
    return 2.0 * s.macs


def _dw_traffic(s: ConvSpec) -> float:
    # every tap reads a shifted plane and reads + writes the accumulator
    return s.kh * s.kw * (_shifted_bytes(s) + 2 * s.out_bytes) + s.in_bytes


def _dw_taps(w: np.ndarray, s: ConvSpec) -> np.ndarray:
    """Weights as (taps, C, m): tap t scales input channel c into outputs c*m .. c*m+m-1."""
    m = s.o // s.c
    return packed(w, "dw", lambda: np.ascontiguousarray(w.reshape(s.c, m, s.kh * s.kw).transpose(2, 0, 1)))


def _run_depthwise(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    xp = pad_nchw(x, s.pad)
    wt = _dw_taps(w, s)
    m = s.o // s.c
    out = np.zeros((s.n, s.c, m, s.ho, s.wo), x.dtype)
    for t, (i, j) in enumerate(taps(s)):
        rows, cols = tap_slice(s, i, j)
        out += xp[:, :, None, rows, cols] * wt[t][None, :, :, None, None]
    return out.reshape(s.n, s.o, s.ho, s.wo)


def _run_depthwise_nhwc(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    xp = pad_nhwc(x, s.pad)
    wt = _dw_taps(w, s)
    m = s.o // s.c
    out = np.zeros((s.n, s.ho, s.wo, s.c, m), x.dtype)
    for t, (i, j) in enumerate(taps(s)):
        rows, cols = tap_slice(s, i, j)
        out += xp[:, rows, cols, :, None] * wt[t]
    return out.reshape(s.n, s.ho, s.wo, s.o)


DIRECT = register(Primitive(
    "direct", "conv", "direct", "NCHW", "NCHW", applies=lambda s: s.is_float, run=_run_direct,
    workspace=_shifted_bytes, traffic=_direct_traffic, calls=_calls, efficiency=0.35,
    doc="tap loop; per tap a channel contraction (BLAS) of the shifted input, accumulated"))

DEPTHWISE = register(Primitive(
    "depthwise", "conv", "depthwise", "NCHW", "NCHW", applies=_dw_applies, run=_run_depthwise,
    flops=_dw_flops, traffic=_dw_traffic, calls=_calls, efficiency=0.05,
    doc="depthwise direct: per-channel scaled shifted planes (NCHW)"))

DEPTHWISE_NHWC = register(Primitive(
    "depthwise_nhwc", "conv", "depthwise", "NHWC", "NHWC", applies=_dw_applies, run=_run_depthwise_nhwc,
    flops=_dw_flops, traffic=_dw_traffic, calls=_calls, efficiency=0.05,
    doc="depthwise direct with channels innermost (NHWC)"))
