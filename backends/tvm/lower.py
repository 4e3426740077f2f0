"""Lower one IR node to a TVM kernel: its TE compute, how to schedule it, and its arguments.

`lower_node` returns a `Lowered` (placeholders + output in argument order, the arguments as
graph values or bound constants, and a schedule kind) or raises LpdcUnsupportedError, in which
case the planner runs the node on the NumPy reference kernel instead. 4-D activations are NHWC
on the TVM side; `in_layouts` says which layout each value argument must arrive in.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import LpdcUnsupportedError
from ...ir import Graph, Node, Value
from ...ir.ops._shape import pads4, pair
from . import compute as C
from . import sparse_fc as SP
from .lower_simple import SIMPLE


@dataclass
class Lowered:
    """One node as a TVM kernel. `args` are Values (runtime data) or ndarrays (bound weights)."""

    tensors: list[Any]  # te placeholders then the output, in call order
    args: list[Value | np.ndarray]  # one per placeholder
    schedule: str  # "conv" | "depthwise" | "fc" | "sparse_fc" | "sparse_conv" | "qconv" | "generic"
    key: tuple  # equal keys = identical kernels (shared between nodes)
    info: dict[str, Any] = field(default_factory=dict)  # shape + knobs for the schedule
    # Nodes after this one computed inside the kernel (a requantize fused into an integer conv):
    # the kernel's output is the last one's output, and those nodes get no step of their own.
    absorbs: list[Node] = field(default_factory=list)
    # Positions in `args` of 4-D activations the kernel reads NCHW, as stored, instead of NHWC (a
    # graph input read by a stem conv: the kernel's padding stage transposes it for free).
    nchw_args: tuple[int, ...] = ()


def is_act4(v: Value | None) -> bool:
    return v is not None and v.type.rank == 4 and v.type.layout in (None, "NCHW")


def nhwc_shape(v: Value) -> tuple[int, ...]:
    """The shape the TVM side stores `v` in (NHWC for 4-D activations)."""
    s = tuple(int(d) for d in v.type.shape)
    return (s[0], s[2], s[3], s[1]) if is_act4(v) else s


def _require(cond: bool, why: str) -> None:
    if not cond:
        raise LpdcUnsupportedError(why)


def _f32(node: Node) -> None:
    for v in (*node.inputs, *node.outputs):
        _require(v is None or (v.type.dtype == "f32" and v.type.quant is None), "only f32 graphs have TVM kernels")


def _epilogue(node: Node, g: Graph, channels: int) -> tuple[dict[str, Any], list[Value | np.ndarray]]:
    """Epilogue flags + its extra arguments (bias, residual, slope) in compute.py's order."""
    a, ins = node.attrs, list(node.inputs) + [None, None, None]
    epi = {"activation": a.get("activation", "none"), "alpha": float(a.get("act_alpha", 0.0)),
           "beta": float(a.get("act_beta", 0.0)), "channels": channels}
    extra: list[Value | np.ndarray] = []
    if ins[2] is not None:
        b = g.const_data(ins[2])
        _require(b is not None and b.size == channels, "bias must be a per-channel constant")
        epi["bias"] = True
        extra.append(np.ascontiguousarray(b.reshape(-1), np.float32))
    if ins[3] is not None:
        epi["residual"] = True
        extra.append(ins[3])
    if epi["activation"] == "prelu":
        s = g.const_data(ins[4])
        _require(s is not None and s.size in (1, channels), "prelu slope must be a constant per channel")
        extra.append(np.ascontiguousarray(np.broadcast_to(s.reshape(-1), (channels,)), np.float32))
    return epi, extra


def conv_shape(node: Node, w: np.ndarray) -> C.ConvShape:
    """The static geometry of conv `node` (NCHW input) with OIHW weights `w`."""
    a = node.attrs
    n, c, h, wd = node.inputs[0].type.shape
    k, _, kh, kw = w.shape
    oh, ow = node.output.type.shape[2:]
    return C.ConvShape(n, h, wd, c, k, kh, kw, oh, ow, pair(a["stride"], "stride"), tuple(pads4(a["pad"])),
                       pair(a["dilation"], "dilation"), a["group"])


def _lower_conv(node: Node, g: Graph, vec: int, knobs: Any = None, registers: int = 32,
                sparse: bool | None = None, algorithm: str | None = None) -> Lowered:
    from .schedules.x86_conv import check_knobs, default_conv_knobs

    x, wv = node.inputs[0], node.inputs[1]
    _require(is_act4(x) and is_act4(node.output), "conv needs NCHW 4-D activations")
    w = g.const_data(wv)
    _require(w is not None, "conv weights must be constant")
    s = conv_shape(node, w)
    c, k = s.c, s.k
    epi, extra = _epilogue(node, g, k)
    if s.group == c == k and w.shape[1] == 1:
        from .schedules.x86_conv import depthwise_ow_tile

        owt = depthwise_ow_tile(s)
        tensors, _ = C.depthwise_nhwc(s, epi, -(-s.ow // owt) * owt)
        return Lowered(tensors, [x, C.pack_depthwise_weight(w), *extra], "depthwise",
                       ("dw", s, _epi_key(epi)), {"shape": s})
    if sparse and s.group == 1:  # only when asked (compile_tvm's sparse= mode): see sparse_select.py
        from . import sparse_conv as SC

        geo = SC.geometry(s, vec)
        vals, offs = SC.ell_pack(w, s, geo)
        tensors, _ = SC.sparse_conv_nhwc(s, geo, vals.shape[1], epi)
        return Lowered(tensors, [x, vals, offs, *extra], "sparse_conv",
                       ("sparse_conv", s, geo, vals.shape[1], _epi_key(epi)), {"shape": s, "geometry": geo})
    if algorithm is None and knobs is None:
        from .winograd import default_winograd_m

        m = default_winograd_m(s, vec)
        algorithm = f"winograd{m}" if m else "direct"
    if algorithm in ("winograd2", "winograd4"):
        from .winograd import lower_winograd

        return lower_winograd(node, g, vec, int(algorithm[-1]))
    _require(algorithm in (None, "direct"), f"unknown conv algorithm {algorithm!r}")
    kn = default_conv_knobs(s, vec, registers) if knobs is None else check_knobs(s, knobs, where=node.name)
    # A graph input arrives NCHW: transposing it in the kernel's padding stage is 2-3x cheaper than
    # a NumPy transpose before the call (MobileNet's 3->32 stem: 0.194 -> 0.069 ms with the copy).
    x_nchw = x in g.inputs
    tensors, _ = C.conv_nhwc(s, kn.oc_tile, epi, kn.kp, kn.owp, x_nchw)
    return Lowered(tensors, [x, C.pack_conv_weight(w, kn.oc_tile, kn.kp), *extra], "conv",
                   ("conv", s, kn, _epi_key(epi), x_nchw), {"shape": s, "knobs": kn}, nchw_args=(0,) if x_nchw else ())


def fc_matrix(node: Node, w: np.ndarray) -> tuple[int, int, np.ndarray]:
    """(rows m, reduction k, weights [N, k]) of a fully_connected whose input is viewed as (m, k).
    A 4-D input arrives NHWC: the weight columns are permuted from CHW to HWC order instead."""
    x = node.inputs[0]
    axis = node.attrs["axis"] % max(x.type.rank, 1)
    m, kdim = int(np.prod(x.type.shape[:axis])), int(np.prod(x.type.shape[axis:]))
    _require(node.output.type.rank == 2 and w.shape[1] == kdim, "fully_connected must produce a matrix")
    if is_act4(x):
        _require(axis == 1, "a 4-D fully_connected input must be flattened from axis 1")
        _, c, h, wd = x.type.shape
        w = w.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(w.shape[0], kdim)
    return m, kdim, w


def _lower_fc(node: Node, g: Graph, vec: int, sparse: bool | None = None) -> Lowered:
    """`sparse`: True / False force the sliced-ELL / dense kernel; None picks by effective density."""
    x, wv = node.inputs[0], node.inputs[1]
    w = g.const_data(wv)
    _require(w is not None and w.ndim == 2, "fully_connected weights must be a constant matrix")
    m, kdim, w = fc_matrix(node, w)
    nout = w.shape[0]
    kb = max(d for d in range(1, vec + 1) if nout % d == 0)
    epi, extra = _epilogue(node, g, nout)
    if sparse is None:
        sparse = m <= SP.MAX_SPARSE_BATCH and SP.effective_density(w) < SP.MAX_SPARSE_DENSITY
    if sparse:
        vals, cols = SP.ell_pack(w, kb)
        tensors, _ = SP.sparse_fully_connected(nhwc_shape(x), m, kdim, vals.shape[1], kb, epi)
        return Lowered(tensors, [x, vals, cols, *extra], "sparse_fc",
                       ("sparse_fc", nhwc_shape(x), m, kdim, nout, kb, vals.shape[1], _epi_key(epi)), {"kb": kb})
    tensors, _ = C.fully_connected(nhwc_shape(x), m, kdim, kb, epi)
    return Lowered(tensors, [x, C.pack_fc_weight(w, kb), *extra], "fc",
                   ("fc", nhwc_shape(x), m, kdim, nout, kb, _epi_key(epi)), {"kb": kb})


def _epi_key(epi: dict[str, Any]) -> tuple:
    return tuple(sorted(epi.items()))


LOWERINGS: dict[str, Callable[[Node, Graph, int], Lowered]] = {"fully_connected": _lower_fc}


def lower_node(node: Node, g: Graph, vec: int, knobs: Any = None, registers: int = 32,
               fuse: bool = True, sparse: bool | None = None, algorithm: str | None = None) -> Lowered:
    """The TVM kernel for `node`, or LpdcUnsupportedError (the caller falls back to NumPy).

    `knobs` (a schedules.x86_conv.ConvKnobs) replaces a conv's default register tile. `fuse`:
    an integer layer may absorb the requantize/dequantize after it (Lowered.absorbs). `sparse`
    (f32 FC / group-1 conv): True / False force the sparse / dense kernel; None is the default
    (FC by effective density, conv dense). `algorithm` (dense f32 conv): "direct", "winograd2",
    "winograd4"; None = the shape rule of winograd.default_winograd_m (direct when knobs are given).
    """
    from .lower_quant import QUANT_OPS, is_integer_layer, lower_quant

    if node.op in QUANT_OPS or is_integer_layer(node):
        return lower_quant(node, g, vec, fuse)
    _f32(node)
    if node.op == "conv":
        return _lower_conv(node, g, vec, knobs, registers, sparse, algorithm)
    if node.op == "fully_connected":
        return _lower_fc(node, g, vec, sparse)
    fn = LOWERINGS.get(node.op) or SIMPLE.get(node.op)
    if fn is None:
        raise LpdcUnsupportedError(f"no TVM kernel for op '{node.op}'")
    return fn(node, g, vec)
