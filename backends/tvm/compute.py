"""TE computes for the weighted layers in NHWC: direct conv, depthwise conv, fully connected.

Activations are NHWC inside the TVM backend (channels innermost, so the output-channel loop
vectorises and 1x1 convs are plain GEMMs); weights are packed once at build time into
`[K/kb, KH, KW, C/g, kb]` so the `kb` output channels a register tile needs are contiguous.
Every compute ends in the fused epilogue `act(conv + bias + residual)` of ir/ops/nn.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import te, topi


@dataclass(frozen=True)
class ConvShape:
    """The static geometry of one conv node (NHWC activations, batch n)."""

    n: int
    h: int
    w: int
    c: int
    k: int
    kh: int
    kw: int
    oh: int
    ow: int
    stride: tuple[int, int]
    pad: tuple[int, int, int, int]  # top, left, bottom, right
    dilation: tuple[int, int]
    group: int


def activation(y: Any, kind: str, alpha: float, beta: float, slope: Any = None) -> Any:
    """The epilogue activation as a TE expression (same vocabulary as the NumPy reference)."""
    f = "float32"  # the backend lowers fp32 graphs only
    zero, one = tvm.tirx.const(0.0, f), tvm.tirx.const(1.0, f)
    if kind == "none":
        return y
    if kind == "relu":
        return tvm.te.max(y, zero)
    if kind == "relu6":
        return tvm.te.min(tvm.te.max(y, zero), tvm.tirx.const(6.0, f))
    if kind == "clip":
        return tvm.te.min(tvm.te.max(y, tvm.tirx.const(alpha, f)), tvm.tirx.const(beta, f))
    if kind == "leaky_relu":
        return tvm.tirx.Select(y >= zero, y, y * tvm.tirx.const(alpha, f))
    if kind == "prelu":
        return tvm.tirx.Select(y >= zero, y, y * slope)
    if kind == "sigmoid":
        return tvm.tirx.sigmoid(y)
    if kind == "tanh":
        return tvm.tirx.tanh(y)
    if kind == "hard_sigmoid":
        return tvm.te.min(tvm.te.max(y * tvm.tirx.const(alpha, f) + tvm.tirx.const(beta, f), zero), one)
    if kind == "hard_swish":
        t = y / tvm.tirx.const(6.0, f) + tvm.tirx.const(0.5, f)
        return y * tvm.te.min(tvm.te.max(t, zero), one)
    if kind == "elu":
        return tvm.tirx.Select(y > zero, y, tvm.tirx.const(alpha, f) * (tvm.tirx.exp(tvm.te.min(y, zero)) - one))
    raise AssertionError(f"unknown activation {kind}")


def _padded(x: Any, s: ConvShape, owp: int | None = None, nchw: bool = False, name: str = "pad") -> Any:
    """Zero-pad x into NHWC (a separate stage: keeping the bounds test out of the FMA loop pays).

    `owp` > ow makes the conv compute extra (discarded) output columns, so a register tile
    need not divide the width: the right padding grows to cover them (unless x, a computed
    tensor, is already that wide). `nchw`: x arrives NCHW (a graph input) and this stage also
    transposes it, so the runner need not.
    """
    pt, pl, pb, pr = s.pad
    owp = owp or s.ow
    wp = max(s.w + pl + pr, (owp - 1) * s.stride[1] + (s.kw - 1) * s.dilation[1] + 1)
    if not any(s.pad) and not nchw and int(x.shape[2]) >= wp:
        return x

    def read(n: Any, i: Any, j: Any, c: Any) -> Any:
        return x[n, c, i - pt, j - pl] if nchw else x[n, i - pt, j - pl, c]

    return te.compute(
        (s.n, s.h + pt + pb, wp, s.c),
        lambda n, i, j, c: tvm.tirx.if_then_else(
            tvm.tirx.all(i >= pt, i < s.h + pt, j >= pl, j < s.w + pl), read(n, i, j, c),
            tvm.tirx.const(0.0, x.dtype)),
        name=name)


def conv_nhwc(s: ConvShape, kb: int, epi: dict[str, Any], kp: int | None = None,
              owp: int | None = None, x_nchw: bool = False, x: Any = None) -> tuple[list[Any], Any]:
    """Direct (grouped) conv; weights packed [Kp/kb, KH, KW, C/g, kb]. Returns (args, output).

    The conv stage computes Kp >= K channels and OWp >= OW columns (zero weights / discarded
    columns) so register tiles need not divide the layer; the epilogue writes the real K x OW.
    `x_nchw`: the input arrives NCHW (see _padded); the output is NHWC all the same. `x`: a
    computed NHWC tensor to read instead of a placeholder (a fused producer; still args[0]).
    """
    kp, owp = kp or s.k, owp or s.ow
    if x is None:
        x = te.placeholder((s.n, s.c, s.h, s.w) if x_nchw else (s.n, s.h, s.w, s.c), name="x")
    cg, kg = s.c // s.group, s.k // s.group
    wp = te.placeholder((kp // kb, s.kh, s.kw, cg, kb), name="w")
    xp = _padded(x, s, owp, x_nchw)
    rh, rw, rc = te.reduce_axis((0, s.kh), "rh"), te.reduce_axis((0, s.kw), "rw"), te.reduce_axis((0, cg), "rc")
    (sh, sw), (dh, dw) = s.stride, s.dilation

    def body(n: Any, i: Any, j: Any, k: Any) -> Any:
        cin = rc if s.group == 1 else (k // kg) * cg + rc
        return te.sum(xp[n, i * sh + rh * dh, j * sw + rw * dw, cin] * wp[k // kb, rh, rw, rc, k % kb],
                      axis=[rh, rw, rc])

    conv = te.compute((s.n, s.oh, owp, kp), body, name="conv")
    args, out = _epilogue(conv, s.k, epi, (s.n, s.oh, s.ow, s.k))
    return [x, wp, *args, out], out


def depthwise_nhwc(s: ConvShape, epi: dict[str, Any], owp: int | None = None,
                   prefix: str = "", out_width: int | None = None) -> tuple[list[Any], Any]:
    """Depthwise conv (group == C == K); weights [KH, KW, C]; OWp >= OW columns computed.

    `prefix` names the stages and placeholders (a fused kernel holds two convs); `out_width`:
    columns the epilogue writes (default OW; a fused consumer reads all OWp)."""
    owp = owp or s.ow
    x = te.placeholder((s.n, s.h, s.w, s.c), name="x")
    wt = te.placeholder((s.kh, s.kw, s.c), name=f"{prefix}w")
    xp = _padded(x, s, owp, name=f"{prefix}pad")
    rh, rw = te.reduce_axis((0, s.kh), "rh"), te.reduce_axis((0, s.kw), "rw")
    (sh, sw), (dh, dw) = s.stride, s.dilation
    conv = te.compute(
        (s.n, s.oh, owp, s.c),
        lambda n, i, j, c: te.sum(xp[n, i * sh + rh * dh, j * sw + rw * dw, c] * wt[rh, rw, c], axis=[rh, rw]),
        name=f"{prefix}conv")
    args, out = _epilogue(conv, s.c, epi, (s.n, s.oh, out_width or s.ow, s.c), prefix)
    return [x, wt, *args, out], out


def depthwise_pointwise_nhwc(sd: ConvShape, epi_dw: dict[str, Any], sp: ConvShape, kb: int,
                             epi_pw: dict[str, Any], kp: int, owp: int) -> tuple[list[Any], Any]:
    """A depthwise conv feeding a 1x1 conv, as one kernel (dw_pw_fusion.py): the depthwise
    result is an intermediate stage ("dw_*" blocks) the schedule computes a row at a time.
    Arguments: x, dw weights, dw epilogue extras, then conv_nhwc's (packed weights, extras, out)."""
    dw_args, y = depthwise_nhwc(sd, epi_dw, owp, prefix="dw_", out_width=owp)
    pw_args, out = conv_nhwc(sp, kb, epi_pw, kp, owp, x=y)
    return [*dw_args[:-1], *pw_args[1:]], out


def fully_connected(x_shape: tuple[int, ...], m: int, k: int, kb: int, epi: dict[str, Any]) -> tuple[list[Any], Any]:
    """y[m, n] = x[m, :] . w[n, :]; weights packed [N/kb, K, kb] so kb outputs share each x load.

    x keeps its stored shape (e.g. NHWC) and is viewed as (m, k) inside the index math.
    """
    n_out = epi["channels"]
    x = te.placeholder(x_shape, name="x")
    flat = x if len(x_shape) == 2 else topi.reshape(x, (m, k))
    wp = te.placeholder((n_out // kb, k, kb), name="w")
    r = te.reduce_axis((0, k), "r")
    conv = te.compute((m, n_out), lambda i, j: te.sum(flat[i, r] * wp[j // kb, r, j % kb], axis=r), name="conv")
    args, out = _epilogue(conv, n_out, epi)
    return [x, wp, *args, out], out


def _epilogue(conv: Any, channels: int, epi: dict[str, Any],
              shape: tuple[int, ...] | None = None, prefix: str = "") -> tuple[list[Any], Any]:
    """out = act(conv + bias[c] + residual); returns (extra placeholders in argument order, out)."""
    shape = shape or tuple(int(d) for d in conv.shape)
    args: list[Any] = []
    bias = te.placeholder((channels,), name=f"{prefix}bias") if epi.get("bias") else None
    res = te.placeholder(shape, name=f"{prefix}residual") if epi.get("residual") else None
    slope = te.placeholder((channels,), name=f"{prefix}slope") if epi.get("activation") == "prelu" else None
    args += [t for t in (bias, res, slope) if t is not None]

    def body(*idx: Any) -> Any:
        y = conv(*idx)
        if bias is not None:
            y = y + bias[idx[-1]]
        if res is not None:
            y = y + res(*idx)
        return activation(y, epi.get("activation", "none"), epi.get("alpha", 0.0), epi.get("beta", 0.0),
                          None if slope is None else slope[idx[-1]])

    return args, te.compute(shape, body, name=f"{prefix}out")


def pack_conv_weight(w: np.ndarray, kb: int, kp: int | None = None) -> np.ndarray:
    """OIHW -> [Kp/kb, KH, KW, I, kb] (contiguous kb-wide output-channel vectors; zero rows to Kp)."""
    if kp and kp > w.shape[0]:
        w = np.concatenate([w, np.zeros((kp - w.shape[0], *w.shape[1:]), w.dtype)])
    k, i, kh, kw = w.shape
    return np.ascontiguousarray(w.reshape(k // kb, kb, i, kh, kw).transpose(0, 3, 4, 2, 1)).astype(np.float32)


def pack_depthwise_weight(w: np.ndarray) -> np.ndarray:
    """[C, 1, KH, KW] -> [KH, KW, C]."""
    return np.ascontiguousarray(w[:, 0].transpose(1, 2, 0)).astype(np.float32)


def pack_fc_weight(w: np.ndarray, kb: int) -> np.ndarray:
    """[N, K] -> [N/kb, K, kb]."""
    n, k = w.shape
    return np.ascontiguousarray(w.reshape(n // kb, kb, k).transpose(0, 2, 1)).astype(np.float32)
