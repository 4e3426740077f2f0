"""Weighted layers: conv, conv_transpose, fully_connected, gemm, matmul.

conv and fully_connected carry an *epilogue* (bias, optional residual add, activation) so that
fusion passes can fold the ops that follow them without new op kinds:
    y = act(conv(x, w) + b + residual)
The activation's parameters are `act_alpha`/`act_beta` (leaky_relu/elu alpha; clip min/max;
hard_sigmoid alpha/beta); prelu takes its slope as the last input.
"""

from __future__ import annotations

from typing import Any

from .. import dtypes
from ..registry import ACTIVATION, HAS_WEIGHTS, PURE, Attr, FlopCount, get_op, register_op
from ..types import QuantParams, TensorType
from . import _shape as S

ACTIVATIONS = (
    "none",
    "relu",
    "relu6",
    "clip",
    "leaky_relu",
    "prelu",
    "sigmoid",
    "tanh",
    "hard_sigmoid",
    "hard_swish",
    "elu",
)

EPILOGUE_ATTRS = {
    "activation": Attr("none", "str", ACTIVATIONS),
    "act_alpha": Attr(0.0, "float"),
    "act_beta": Attr(0.0, "float"),
}

_CONV_ATTRS = {
    "stride": Attr([1, 1], "ints"),
    "pad": Attr([0, 0, 0, 0], "ints"),  # top, left, bottom, right
    "dilation": Attr([1, 1], "ints"),
    "group": Attr(1, "int"),
    **EPILOGUE_ATTRS,
}


def _opt(ins: list[TensorType | None], i: int) -> TensorType | None:
    return ins[i] if i < len(ins) else None


def _acc_dtype(x: TensorType) -> str:
    """Integer convolutions accumulate in int32; floats keep their type."""
    return "i32" if x.dtype in ("i8", "u8", "i16") or x.dtype.startswith("fx") else x.dtype


def _scales(t: TensorType, per_channel_ok: bool) -> tuple[float, ...] | None:
    """The real step of an integer operand: 2**-F for fixed point, its quant scale(s), else None."""
    bits = dtypes.fixed_bits(t.dtype)
    if bits is not None:
        return (2.0 ** -bits[1],)
    if t.quant is None or (t.quant.axis is not None and not (per_channel_ok and t.quant.axis == 0)):
        return None
    return t.quant.scale


def _acc_quant(out: TensorType, x: TensorType, w: TensorType, c_axis: int) -> TensorType:
    """An int32 accumulator of scaled integers carries scale s_x * s_w (per output channel when w
    is quantized per channel) and zero point 0, so passes that re-infer types keep it."""
    sx, sw = _scales(x, False), _scales(w, True)
    if out.dtype != "i32" or sx is None or sw is None or (len(sw) > 1 and out.shape[c_axis] != len(sw)):
        return out
    scale = tuple(float(sx[0] * s) for s in sw)
    return out.with_dtype("i32", QuantParams(scale, (0,) * len(scale), c_axis if len(scale) > 1 else None))


def _check_epilogue(ins: list[TensorType | None], out: TensorType, attrs: dict[str, Any], op: str) -> None:
    bias, residual = (ins + [None, None, None])[2:4]
    if bias is not None:
        S.require(
            bias.size == out.shape[S.nchw_axes(out)[0]] if out.rank == 4 else bias.size == out.shape[-1],
            f"{op} bias has {bias.size} elements, expected one per output channel",
        )
    if residual is not None:
        S.require(
            residual.shape == out.shape, f"{op} residual {list(residual.shape)} differs from output {list(out.shape)}"
        )
    has_slope = len(ins) > 4 and ins[4] is not None
    S.require(
        has_slope == (attrs["activation"] == "prelu"),
        f"{op}: prelu activation needs a slope input (input 5) and only it",
    )


def _conv_flops(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
    w = S.present(ins[1], "w")
    macs = outs[0].size * S.numel(w.shape[1:])
    extra = outs[0].size * ((_opt(ins, 2) is not None) + (_opt(ins, 3) is not None))
    return FlopCount(mul=macs, add=macs - outs[0].size + extra, mac=macs) + epilogue_flops(attrs, outs[0])


def epilogue_flops(attrs: dict[str, Any], out: TensorType) -> FlopCount:
    """A fused activation costs what the standalone op it replaced costs (relu6 is clip(0, 6))."""
    act = attrs.get("activation", "none")
    if act == "none":
        return FlopCount()
    return get_op("clip" if act == "relu6" else act).flops([out], [out], {})


@register_op(
    "conv",
    family="nn",
    inputs=("x", "w", "b", "residual", "slope"),
    min_inputs=2,
    attrs=_CONV_ATTRS,
    traits=(PURE, HAS_WEIGHTS),
    flops=_conv_flops,
)
def _infer_conv(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """2-D convolution, weights OIHW, groups and dilation; bias/residual/activation epilogue."""
    blocked = S.blocked_layout(ins[0])  # NCHW<k>c activations are checked as NCHW, then re-blocked
    ins = [S.unblock(t) for t in ins]
    x, w = S.present(ins[0], "x"), S.present(ins[1], "w")
    c_ax, h_ax, w_ax = S.nchw_axes(x)
    S.require(w.rank == 4, f"conv weight must be 4-D (OIHW), got {list(w.shape)}")
    group = attrs["group"]
    cin, cout = x.shape[c_ax], w.shape[0]
    S.require(
        group >= 1 and cin % group == 0 and cout % group == 0,
        f"group {group} must divide input channels {cin} and output channels {cout}",
    )
    S.require(
        w.shape[1] * group == cin,
        f"weight {list(w.shape)} expects {w.shape[1] * group} input channels, input has {cin}",
    )
    sh, sw = S.pair(attrs["stride"], "stride")
    dh, dw = S.pair(attrs["dilation"], "dilation")
    pt, pl, pb, pr = S.pads4(attrs["pad"])
    ho = S.window_out(x.shape[h_ax], w.shape[2], sh, pt, pb, dh)
    wo = S.window_out(x.shape[w_ax], w.shape[3], sw, pl, pr, dw)
    out = S.make_nchw_like(x, x.shape[0], cout, ho, wo, _acc_dtype(x))
    if blocked is None:
        out = _acc_quant(out, x, w, S.nchw_axes(out)[0])
    _check_epilogue(ins, out, attrs, "conv")
    return [S.reblock(out, blocked)]


def _deconv_flops(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
    x, w = S.present(ins[0], "x"), S.present(ins[1], "w")
    macs = x.size * S.numel(w.shape[1:])
    bias = outs[0].size if _opt(ins, 2) is not None else 0
    return FlopCount(mul=macs, add=macs + bias, mac=macs) + epilogue_flops(attrs, outs[0])


@register_op(
    "conv_transpose",
    family="nn",
    inputs=("x", "w", "b"),
    min_inputs=2,
    attrs={**_CONV_ATTRS, "output_padding": Attr([0, 0], "ints")},
    traits=(PURE, HAS_WEIGHTS),
    flops=_deconv_flops,
)
def _infer_deconv(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Transposed 2-D convolution; weights are (C_in, C_out/group, kH, kW) as in ONNX and Caffe."""
    x, w = S.present(ins[0], "x"), S.present(ins[1], "w")
    c_ax, h_ax, w_ax = S.nchw_axes(x)
    S.require(w.rank == 4, f"conv_transpose weight must be 4-D, got {list(w.shape)}")
    group = attrs["group"]
    S.require(
        w.shape[0] == x.shape[c_ax],
        f"weight {list(w.shape)} expects {w.shape[0]} input channels, input has {x.shape[c_ax]}",
    )
    S.require(group >= 1 and x.shape[c_ax] % group == 0, f"group {group} must divide input channels {x.shape[c_ax]}")
    sh, sw = S.pair(attrs["stride"], "stride")
    dh, dw = S.pair(attrs["dilation"], "dilation")
    pt, pl, pb, pr = S.pads4(attrs["pad"])
    oph, opw = S.pair(attrs["output_padding"], "output_padding")
    ho = (x.shape[h_ax] - 1) * sh - pt - pb + dh * (w.shape[2] - 1) + 1 + oph
    wo = (x.shape[w_ax] - 1) * sw - pl - pr + dw * (w.shape[3] - 1) + 1 + opw
    S.require(ho > 0 and wo > 0, f"conv_transpose output size {ho}x{wo} is not positive")
    out = S.make_nchw_like(x, x.shape[0], w.shape[1] * group, ho, wo, _acc_dtype(x))
    if len(ins) > 2 and ins[2] is not None:
        S.require(ins[2].size == w.shape[1] * group, "conv_transpose bias needs one value per output channel")
    S.require(attrs["activation"] != "prelu", "conv_transpose does not fuse prelu")
    return [out]


def _fc_flops(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
    w = S.present(ins[1], "w")
    macs = outs[0].size * w.shape[1]
    extra = outs[0].size * ((_opt(ins, 2) is not None) + (_opt(ins, 3) is not None))
    return FlopCount(mul=macs, add=macs - outs[0].size + extra, mac=macs) + epilogue_flops(attrs, outs[0])


@register_op(
    "fully_connected",
    family="nn",
    inputs=("x", "w", "b", "residual", "slope"),
    min_inputs=2,
    attrs={"axis": Attr(1, "int"), **EPILOGUE_ATTRS},
    traits=(PURE, HAS_WEIGHTS),
    flops=_fc_flops,
)
def _infer_fc(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """y = x' @ w.T + b, where x' flattens x from `axis` on (Caffe InnerProduct); w is (M, K)."""
    x, w = S.present(ins[0], "x"), S.present(ins[1], "w")
    axis = S.norm_axis(attrs["axis"], x.rank)
    S.require(w.rank == 2, f"fully_connected weight must be 2-D (M, K), got {list(w.shape)}")
    k = S.numel(x.shape[axis:])
    S.require(
        w.shape[1] == k, f"weight {list(w.shape)} expects K={w.shape[1]}, input {list(x.shape)} flattens to K={k}"
    )
    out = TensorType(tuple(x.shape[:axis]) + (w.shape[0],), _acc_dtype(x))
    out = _acc_quant(out, x, w, out.rank - 1)
    _check_epilogue(ins, out, attrs, "fully_connected")
    return [out]


def _gemm_flops(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
    a = S.present(ins[0], "a")
    k = a.shape[0] if attrs["trans_a"] else a.shape[1]
    n = outs[0].size
    has_c = _opt(ins, 2) is not None
    # K products need K-1 adds per output, plus beta*c; alpha and beta scale only when not 1.
    mul = n * k + (n if attrs["alpha"] != 1 else 0) + (n if has_c and attrs["beta"] != 1 else 0)
    return FlopCount(mul=mul, add=n * max(k - 1, 0) + (n if has_c else 0), mac=n * k)


@register_op(
    "gemm",
    family="nn",
    inputs=("a", "b", "c"),
    min_inputs=2,
    attrs={
        "alpha": Attr(1.0, "float"),
        "beta": Attr(1.0, "float"),
        "trans_a": Attr(False, "bool"),
        "trans_b": Attr(False, "bool"),
    },
    flops=_gemm_flops,
)
def _infer_gemm(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """ONNX Gemm: alpha * op(a) @ op(b) + beta * c, c broadcast to (M, N)."""
    a, b = S.present(ins[0], "a"), S.present(ins[1], "b")
    S.require(a.rank == 2 and b.rank == 2, f"gemm needs 2-D operands, got {list(a.shape)} and {list(b.shape)}")
    m, ka = (a.shape[1], a.shape[0]) if attrs["trans_a"] else a.shape
    kb, n = (b.shape[1], b.shape[0]) if attrs["trans_b"] else b.shape
    S.require(ka == kb, f"gemm inner dimensions differ: {ka} vs {kb}")
    if len(ins) > 2 and ins[2] is not None:
        S.require(
            S.broadcast(ins[2].shape, (m, n)) == (m, n), f"gemm c {list(ins[2].shape)} does not broadcast to {[m, n]}"
        )
    return [TensorType((m, n), _acc_dtype(a))]


def _matmul_flops(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
    a = S.present(ins[0], "a")
    macs = outs[0].size * a.shape[-1]
    return FlopCount(mul=macs, add=max(macs - outs[0].size, 0), mac=macs)


@register_op("matmul", family="nn", inputs=("a", "b"), flops=_matmul_flops)
def _infer_matmul(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """NumPy matmul semantics (1-D operands promoted and the added axis removed)."""
    a, b = S.present(ins[0], "a"), S.present(ins[1], "b")
    S.require(a.rank >= 1 and b.rank >= 1, "matmul operands must have rank >= 1")
    sa = (1,) + a.shape if a.rank == 1 else a.shape
    sb = b.shape + (1,) if b.rank == 1 else b.shape
    S.require(sa[-1] == sb[-2], f"matmul inner dimensions differ: {list(a.shape)} @ {list(b.shape)}")
    batch = S.broadcast(sa[:-2], sb[:-2])
    shape = batch + (sa[-2], sb[-1])
    if a.rank == 1:
        shape = shape[:-2] + shape[-1:]
    if b.rank == 1:
        shape = shape[:-1]
    return [TensorType(shape, _acc_dtype(a))]


__all__ = ["ACTIVATIONS", "EPILOGUE_ATTRS", "ACTIVATION"]
