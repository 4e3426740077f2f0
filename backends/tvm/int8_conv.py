"""Integer conv for x86 AVX-512: u8 activations x i8 weights -> int32, on VNNI dot products.

The NHWC layout already keeps 4 input channels of one pixel contiguous, which is what
`vpdpbusd` consumes (4 u8 x 4 i8 summed into each of 16 int32 lanes), so the activation needs
no repacking; weights are packed once to `[Kp/16, KH, KW, C4/4, 16, 4]`. The register tile is the
fp32 template's (ow_tile pixels x oc_tile channels of int32 accumulators, schedules/x86_conv.py),
with the innermost 16 channels x 4 inputs replaced by TVM's VNNI tensor intrinsic (or the
AVX-512BW pmaddubsw pair where the CPU has no VNNI).

Zero points: the padding stage fills with the input's zero point and the bias absorbs
`-zp_x * sum(w)`, so `acc = sum((x - zp_x) * w) + b` exactly as the reference computes it.
The epilogue then applies relu and one of: requantize (integer multiplier and shift, rounding
half to even, saturate: bit-exact with the reference), dequantize (scale per channel, float64
product rounded to f32 like the reference), or nothing (the int32 accumulator itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import s_tir, te

from .compute import ConvShape
from .schedules.x86_conv import ConvKnobs, _round_up, _schedule_pad, _vectorize_tail, register_tile

LANES, GROUP = 16, 4  # int32 lanes of one zmm; u8 inputs summed per lane by one vpdpbusd


@dataclass(frozen=True)
class QEpilogue:
    """What follows the int32 accumulation inside the kernel (all per output channel)."""

    relu: bool
    mode: str  # "requantize" | "dequantize" | "acc"
    out_dtype: str  # TVM dtype of the output: uint8/int8, float32, int32
    out_zp: int = 0
    qmin: int = 0
    qmax: int = 0


def int8_intrinsic() -> str | None:
    """TVM's u8 x i8 dot-product intrinsic for this host, or None (no AVX-512 integer support)."""
    from .target import cpu_flags

    flags = cpu_flags()
    if "avx512_vnni" in flags or "avx512vnni" in flags:
        return "dot_16x4_vnni"
    if "avx512bw" in flags:
        return "dot_16x4_avx512"
    return None


def qconv_nhwc(s: ConvShape, kn: ConvKnobs, zp_x: int, epi: QEpilogue) -> list[Any]:
    """Placeholders (x, w, bias, then multiplier+shift or scale) and the output, in call order."""
    c4 = _round_up(s.c, GROUP)
    x = te.placeholder((s.n, s.h, s.w, s.c), "uint8", name="x")
    wp = te.placeholder((kn.kp // LANES, s.kh, s.kw, c4 // GROUP, LANES, GROUP), "int8", name="w")
    bias = te.placeholder((kn.kp,), "int32", name="bias")
    xp = _padded_u8(x, s, kn.owp, c4, zp_x)
    rh, rw = te.reduce_axis((0, s.kh), "rh"), te.reduce_axis((0, s.kw), "rw")
    rc, r4 = te.reduce_axis((0, c4 // GROUP), "rc"), te.reduce_axis((0, GROUP), "r4")
    (sh, sw), (dh, dw) = s.stride, s.dilation
    conv = te.compute(
        (s.n, s.oh, kn.owp, kn.kp),
        lambda n, i, j, k: te.sum(
            xp[n, i * sh + rh * dh, j * sw + rw * dw, rc * GROUP + r4].astype("int32")
            * wp[k // LANES, rh, rw, rc, k % LANES, r4].astype("int32"), axis=[rh, rw, rc, r4]),
        name="conv")
    extra, body = epilogue_body(epi, s.k)
    out = te.compute((s.n, s.oh, s.ow, s.k), lambda n, i, j, k: body(conv[n, i, j, k] + bias[k], k), name="out")
    return [x, wp, bias, *extra, out]


def qdepthwise_nhwc(s: ConvShape, owp: int, zp_x: int, epi: QEpilogue) -> list[Any]:
    """Integer depthwise conv (int32 products, vectorised over channels; VNNI does not apply: no
    reduction over channels). Weights [KH, KW, C] int8; the bias absorbs -zp_x * sum(w)."""
    x = te.placeholder((s.n, s.h, s.w, s.c), "uint8", name="x")
    wt = te.placeholder((s.kh, s.kw, s.c), "int8", name="w")
    bias = te.placeholder((s.c,), "int32", name="bias")
    xp = _padded_u8(x, s, owp, s.c, zp_x)
    rh, rw = te.reduce_axis((0, s.kh), "rh"), te.reduce_axis((0, s.kw), "rw")
    (sh, sw), (dh, dw) = s.stride, s.dilation
    conv = te.compute(
        (s.n, s.oh, owp, s.c),
        lambda n, i, j, c: te.sum(xp[n, i * sh + rh * dh, j * sw + rw * dw, c].astype("int32")
                                  * wt[rh, rw, c].astype("int32"), axis=[rh, rw]),
        name="conv")
    extra, body = epilogue_body(epi, s.c)
    out = te.compute((s.n, s.oh, s.ow, s.c), lambda n, i, j, c: body(conv[n, i, j, c] + bias[c], c), name="out")
    return [x, wt, bias, *extra, out]


def epilogue_body(epi: QEpilogue, channels: int) -> tuple[list[Any], Any]:
    """(extra placeholders, f(acc_int32, channel) -> output element) for `epi`."""
    extra: list[Any] = []
    if epi.mode == "requantize":
        mult = te.placeholder((channels,), "int64", name="multiplier")
        shift = te.placeholder((channels,), "int64", name="shift")
        extra = [mult, shift]
    elif epi.mode == "dequantize":
        scale = te.placeholder((channels,), "float64", name="scale")
        extra = [scale]

    def body(acc: Any, k: Any) -> Any:
        if epi.relu:
            acc = tvm.te.max(acc, tvm.tirx.const(0, "int32"))
        if epi.mode == "acc":
            return acc
        if epi.mode == "dequantize":
            return (acc.astype("float64") * scale[k]).astype("float32")
        return requantize_expr(acc, mult[k], shift[k], epi)

    return extra, body


def requantize_expr(acc: Any, mult: Any, shift: Any, epi: QEpilogue) -> Any:
    """zp + round_half_even(acc * M / 2**shift), saturated: the reference's integer rescale."""
    i64 = "int64"
    one = tvm.tirx.const(1, i64)
    prod = acc.astype(i64) * mult
    floor = tvm.tirx.shift_right(prod, shift)
    rem = prod - tvm.tirx.shift_left(floor, shift)
    half = tvm.tirx.shift_left(one, tvm.te.max(shift - one, tvm.tirx.const(0, i64)))
    odd = tvm.tirx.bitwise_and(floor, one) == one
    up = tvm.tirx.all(shift > tvm.tirx.const(0, i64), tvm.tirx.any(rem > half, tvm.tirx.all(rem == half, odd)))
    q = floor + up.astype(i64) + tvm.tirx.const(epi.out_zp, i64)
    q = tvm.te.min(tvm.te.max(q, tvm.tirx.const(epi.qmin, i64)), tvm.tirx.const(epi.qmax, i64))
    return q.astype(epi.out_dtype)


def _padded_u8(x: Any, s: ConvShape, owp: int, c4: int, zp: int) -> Any:
    """x padded spatially (and to a multiple of 4 channels) with the zero point, as the reference
    pads (x - zp) with zeros; OWp >= OW output columns are covered on the right."""
    pt, pl, pb, pr = s.pad
    wp = max(s.w + pl + pr, (owp - 1) * s.stride[1] + (s.kw - 1) * s.dilation[1] + 1)
    if not any(s.pad) and wp == s.w and c4 == s.c:
        return x
    return te.compute(
        (s.n, s.h + pt + pb, wp, c4),
        lambda n, i, j, c: tvm.tirx.if_then_else(
            tvm.tirx.all(i >= pt, i < s.h + pt, j >= pl, j < s.w + pl, c < s.c), x[n, i - pt, j - pl, c],
            tvm.tirx.const(zp, "uint8")),
        name="pad")


def pack_qconv_weight(w: np.ndarray, kp: int) -> np.ndarray:
    """OIHW int8 -> [Kp/16, KH, KW, C4/4, 16, 4] (zero rows to Kp, zero input channels to C4)."""
    k, c, kh, kw = w.shape
    c4 = _round_up(c, GROUP)
    full = np.zeros((kp, c4, kh, kw), np.int8)
    full[:k, :c] = w
    return np.ascontiguousarray(
        full.reshape(kp // LANES, LANES, c4 // GROUP, GROUP, kh, kw).transpose(0, 4, 5, 2, 1, 3))


def folded_bias(w: np.ndarray, b: np.ndarray | None, zp_x: int, kp: int) -> np.ndarray:
    """b - zp_x * sum(w) per output channel (int32), zero for the padded channels."""
    out = np.zeros(kp, np.int64)
    k = w.shape[0]
    if b is not None:
        out[:k] = b.reshape(-1).astype(np.int64)
    out[:k] -= int(zp_x) * w.reshape(k, -1).astype(np.int64).sum(axis=1)
    if np.abs(out).max(initial=0) >= 2 ** 31:
        raise OverflowError("folded int8 bias does not fit int32")
    return out.astype(np.int32)


def schedule_qconv(sch: s_tir.Schedule, kn: ConvKnobs, intrinsic: str, kw: int) -> None:
    """The fp32 conv template's register tile with the 16x4 dot product tensorized."""
    from .int8_intrin import local_intrinsic

    conv = sch.get_sblock("conv")
    kv, rh = register_tile(sch, kn, LANES, kw <= 3)
    out = sch.get_sblock("out")
    init = sch.decompose_reduction(conv, rh)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.tensorize(kv, local_intrinsic(intrinsic))
    _vectorize_tail(sch, out, sch.get_loops(out)[-1], LANES)
    _schedule_pad(sch, 64)
