"""TVM kernels for quantized graphs: the integer conv / fully connected and the quant ops.

An integer layer in the IR (passes/quantize/lower.py) is `conv(u8, i8, i32) -> i32` followed by a
`requantize` (or, for a terminal layer, a `dequantize`). When the accumulator's only reader is
that op, the conv kernel absorbs it (`Lowered.info["absorbs"]`): the int32 tile never leaves the
registers and the kernel writes the 8-bit (or float) result. quantize / dequantize / requantize
elsewhere become elementwise kernels with the reference's exact arithmetic (float64 scale
products, rounding half to even, saturation), so results match the NumPy backend bit for bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tvm
from tvm import te

from ...errors import LpdcUnsupportedError
from ...ir import Graph, Node, Value, dtypes
from . import int8_conv as Q

if TYPE_CHECKING:
    from .lower import Lowered

QUANT_OPS = ("quantize", "dequantize", "requantize")


def materialize_weights(g: Graph) -> Graph:
    """`g`, or a copy whose constant-only subgraphs (dequantize of stored integer weights, k-means
    gathers) are float constants: a QDQ layer's integers save space in the file, and its kernel
    needs the real weights bound, not recomputed every run."""
    from ...passes.fold_constants import fold_node
    from ...passes.pattern import all_const
    from ...passes.rewrite import remove_dead

    if not any(n.op != "const" and n.inputs and all_const(g, n) for n in g.nodes):
        return g
    g = g.copy()
    for node in list(g.nodes):
        if node.op != "const" and node.inputs:
            fold_node(g, node, allow_growth=True)
    remove_dead(g)
    return g


def is_integer_layer(node: Node) -> bool:
    """A conv / fully_connected whose activations are stored as integers (a quantized layer)."""
    return node.op in ("conv", "fully_connected") and node.inputs[0] is not None and \
        not dtypes.is_float(node.inputs[0].type.dtype)


def lower_quant(node: Node, g: Graph, vec: int, fuse: bool = True) -> Lowered:
    """The kernel of an integer layer or a quant op; LpdcUnsupportedError sends it to NumPy.
    `fuse`: an integer layer may absorb the requantize/dequantize reading its accumulator."""
    if node.op == "conv":
        return _lower_int_conv(node, g, vec, fuse)
    if node.op == "fully_connected":
        return _lower_int_fc(node, g, fuse)
    if node.op in QUANT_OPS:
        return _lower_elementwise(node)
    raise LpdcUnsupportedError(f"no integer TVM kernel for op '{node.op}'")


def _require(cond: bool, why: str) -> None:
    if not cond:
        raise LpdcUnsupportedError(why)


def _tvm_dtype(dtype: str) -> str:
    return str(dtypes.to_numpy(dtype))


def _zero_point(v: Value) -> int:
    q = v.type.quant
    if q is None or not any(q.zero_point):
        return 0
    _require(len(q.zero_point) == 1, f"%{v.name} has per-channel zero points")
    return int(q.zero_point[0])


def _absorbable(node: Node) -> Node | None:
    """The requantize / dequantize that is the accumulator's only reader, if any."""
    acc = node.output
    users = list(acc.users)
    if len(users) != 1:
        return None
    u = users[0]
    if u.op in ("requantize", "dequantize") and u.inputs[0] is acc:
        return u
    return None


def _layer_epilogue(node: Node, g: Graph, channels: int,
                    fuse: bool = True) -> tuple[Q.QEpilogue, list[np.ndarray], Node | None]:
    """The fused tail after relu: requantize / dequantize of the accumulator, or the int32 itself."""
    act = node.attrs.get("activation", "none")
    _require(act in ("none", "relu"), f"integer layers fuse relu only, not {act}")
    _require(len(node.inputs) <= 3 or all(v is None for v in node.inputs[3:]), "integer layers take no residual")
    acc = node.output
    _require(acc.type.dtype == "i32", "integer layers accumulate in i32")
    tail = _absorbable(node) if fuse and acc not in g.outputs else None
    relu = act == "relu"
    if tail is not None and tail.op == "requantize" and tail.attrs.get("multiplier"):
        out = tail.output
        _require(_zero_point(acc) == 0, "the accumulator has a zero point")
        mult = np.asarray(tail.attrs["multiplier"], np.int64)
        shift = np.asarray(tail.attrs["shift"], np.int64)
        info = np.iinfo(dtypes.to_numpy(out.type.dtype))
        epi = Q.QEpilogue(relu, "requantize", _tvm_dtype(out.type.dtype), _zero_point(out), int(info.min),
                          int(info.max))
        return epi, [np.broadcast_to(mult, (channels,)).copy(), np.broadcast_to(shift, (channels,)).copy()], tail
    if tail is not None and tail.op == "dequantize" and tail.attrs.get("dtype", "f32") == "f32" \
            and acc.type.quant is not None and _zero_point(acc) == 0:
        scale = np.broadcast_to(np.asarray(acc.type.quant.scale, np.float64), (channels,)).copy()
        return Q.QEpilogue(relu, "dequantize", "float32"), [scale], tail
    return Q.QEpilogue(relu, "acc", "int32"), [], None


def _int_weights(node: Node, g: Graph) -> tuple[np.ndarray, np.ndarray | None]:
    w = g.const_data(node.inputs[1])
    _require(w is not None and w.dtype == np.int8, "integer layers need constant int8 weights")
    q = node.inputs[1].type.quant
    _require(q is None or not any(q.zero_point), "integer weights must be symmetric (zero point 0)")
    b = None
    if len(node.inputs) > 2 and node.inputs[2] is not None:
        b = g.const_data(node.inputs[2])
        _require(b is not None and b.size == w.shape[0], "the bias must be a per-channel constant")
    return w, b


def _folded_bias(w: np.ndarray, b: np.ndarray | None, zp: int, kp: int) -> np.ndarray:
    try:
        return Q.folded_bias(w, b, zp, kp)
    except OverflowError as e:
        raise LpdcUnsupportedError(str(e)) from None


def _lower_int_conv(node: Node, g: Graph, vec: int, fuse: bool = True) -> Lowered:
    from .lower import Lowered, conv_shape, is_act4
    from .schedules.x86_conv import default_conv_knobs

    intrinsic = Q.int8_intrinsic()
    _require(vec == 16 and intrinsic is not None, "integer convs need an x86 CPU with AVX-512 (VNNI or BW)")
    x = node.inputs[0]
    _require(x.type.dtype == "u8" and is_act4(x) and is_act4(node.output), "integer convs take NCHW u8 activations")
    w, b = _int_weights(node, g)
    s = conv_shape(node, w)
    k, kw, ow = s.k, s.kw, s.ow
    depthwise = s.group == s.c == k and w.shape[1] == 1
    _require((s.group == 1 or depthwise) and not node.attrs.get("primitive"),
             "integer convs are lowered for group 1 and depthwise, without a catalog primitive")
    zp = _zero_point(x)
    epi, extra, tail = _layer_epilogue(node, g, k, fuse)
    absorbs = [tail] if tail is not None else []
    if depthwise:
        from .schedules.x86_conv import depthwise_ow_tile

        owp = -(-ow // depthwise_ow_tile(s)) * depthwise_ow_tile(s)
        bias = _folded_bias(w, b, zp, k)
        wdw = np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))
        return Lowered(Q.qdepthwise_nhwc(s, owp, zp, epi), [x, wdw, bias, *extra], "depthwise",
                       ("qdw", s, zp, epi), {"shape": s}, absorbs)
    kn = default_conv_knobs(s, Q.LANES, 32)
    bias = _folded_bias(w, b, zp, kn.kp)
    tensors = Q.qconv_nhwc(s, kn, zp, epi)
    info = {"knobs": kn, "intrinsic": intrinsic, "kw": kw}
    return Lowered(tensors, [x, Q.pack_qconv_weight(w, kn.kp), bias, *extra], "qconv",
                   ("qconv", s, kn, zp, epi), info, absorbs)


def _lower_int_fc(node: Node, g: Graph, fuse: bool = True) -> Lowered:
    """u8 x i8 -> i32 GEMV (the classifier), vectorised by the generic schedule."""
    from .lower import Lowered, fc_matrix, nhwc_shape

    x = node.inputs[0]
    _require(x.type.dtype == "u8", "integer fully_connected takes u8 activations")
    w, b = _int_weights(node, g)
    m, kdim, w = fc_matrix(node, w)
    nout = w.shape[0]
    epi, extra, tail = _layer_epilogue(node, g, nout, fuse)
    zp = _zero_point(x)
    bias = _folded_bias(w.reshape(nout, kdim, 1, 1), b, zp, nout)
    xt = te.placeholder(nhwc_shape(x), "uint8", name="x")
    flat = xt if xt.ndim == 2 else te.compute((m, kdim), lambda i, r: _flat_at(xt, i, r), name="T_reshape")
    wt = te.placeholder((kdim, nout), "int8", name="w")
    bt = te.placeholder((nout,), "int32", name="bias")
    r = te.reduce_axis((0, kdim), "r")
    acc = te.compute((m, nout), lambda i, j: te.sum(flat[i, r].astype("int32") * wt[r, j].astype("int32"), axis=r),
                     name="acc")
    more, body = Q.epilogue_body(epi, nout)
    out = te.compute((m, nout), lambda i, j: body(acc[i, j] + bt[j], j), name="out")
    return Lowered([xt, wt, bt, *more, out], [x, np.ascontiguousarray(w.T), bias, *extra], "generic",
                   ("qfc", nhwc_shape(x), m, kdim, nout, zp, epi), {}, [tail] if tail is not None else [])


def _flat_at(xt: Any, i: Any, r: Any) -> Any:
    """Element r of row i of x viewed as a matrix (row-major over its stored shape)."""
    idx, rest = [], r
    for d in reversed(xt.shape[1:]):
        idx.append(rest % d)
        rest = rest // d
    return xt[(i, *reversed(idx))]


def _lower_elementwise(node: Node) -> Lowered:
    """quantize / dequantize / requantize of one tensor, per tensor or per channel."""
    from .lower import Lowered, is_act4, nhwc_shape

    x, y = node.inputs[0], node.output
    shape = nhwc_shape(x)
    t_in, t_out = x.type, y.type
    xt = te.placeholder(shape, _tvm_dtype(t_in.dtype), name="x")
    f64 = "float64"

    def params(t: Any) -> tuple[Any, Any]:
        """(scale, zero point) of type t as float64 constants (per tensor only)."""
        fixed = dtypes.fixed_bits(t.dtype)
        if fixed is not None:
            return tvm.tirx.const(2.0 ** -fixed[1], f64), tvm.tirx.const(0.0, f64)
        q = t.quant
        if q is None:
            return tvm.tirx.const(1.0, f64), tvm.tirx.const(0.0, f64)
        return tvm.tirx.const(float(q.scale[0]), f64), tvm.tirx.const(float(q.zero_point[0]), f64)

    for t in (t_in, t_out):
        _require(t.quant is None or (len(t.quant.scale) == 1 and len(t.quant.zero_point) == 1),
                 "standalone quant ops are lowered per tensor; per-channel ones run on NumPy")

    def saturate(v: Any, dtype: str) -> Any:
        info = np.iinfo(dtypes.to_numpy(dtype))
        v = tvm.te.min(tvm.te.max(v, tvm.tirx.const(float(info.min), f64)), tvm.tirx.const(float(info.max), f64))
        return v.astype(_tvm_dtype(dtype))

    if node.op == "quantize":
        def body(*idx: Any) -> Any:
            s, zp = params(t_out)
            return saturate(tvm.tirx.nearbyint(xt(*idx).astype(f64) / s) + zp, t_out.dtype)
    elif node.op == "dequantize":
        def body(*idx: Any) -> Any:
            s, zp = params(t_in)
            return ((xt(*idx).astype(f64) - zp) * s).astype(_tvm_dtype(node.attrs["dtype"]))
    else:
        _require(not node.attrs.get("multiplier"), "integer requantize is fused into its layer")

        def body(*idx: Any) -> Any:
            s_in, zp_in = params(t_in)
            s_out, zp_out = params(t_out)
            return saturate(tvm.tirx.nearbyint((xt(*idx).astype(f64) - zp_in) * s_in / s_out) + zp_out, t_out.dtype)

    out = te.compute(nhwc_shape(y), body, name="out")
    key = (node.op, shape, t_in, t_out, node.attrs.get("dtype"), is_act4(x))
    return Lowered([xt, out], [x], "generic", key)
