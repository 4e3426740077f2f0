"""One small, valid instance of every registered op, for round-trip and shape-inference tests.

`every_op_graph()` builds a graph that uses each op at least once (with non-default attributes
where that exercises the printer and parser); `SAMPLES` maps op name to a builder.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from lpdc.ir import Graph, TensorType, Value

Builder = Callable[[Graph, Value, np.random.Generator], list[Value]]
SAMPLES: dict[str, Builder] = {}


def sample(*ops: str):
    def deco(fn: Builder) -> Builder:
        for op in ops:
            SAMPLES[op] = fn
        return fn
    return deco


def c(g: Graph, rng: np.random.Generator, shape, name: str = "k", dtype: str = "f32", low: float = -1.0) -> Value:
    data = rng.uniform(low, max(low, 1.0) + 1.0, shape)
    if dtype.startswith("i") or dtype.startswith("u"):
        data = rng.integers(0, 5, shape)
    return g.add_const(np.asarray(data).astype({"f32": np.float32, "i64": np.int64, "i8": np.int8}[dtype]), name, dtype)


@sample("const", "conv")
def _conv(g, x, rng):
    w = c(g, rng, (4, 2, 3, 3), "cw")
    b = c(g, rng, (4,), "cb")
    y = g.op("conv", x, w, b, stride=[2, 1], pad=[1, 0, 2, 1], dilation=[1, 2], group=2)
    r = g.op("conv", x, c(g, rng, (4, 4, 1, 1), "cw2"), None, g.op("conv", x, c(g, rng, (4, 1, 3, 3), "dw"),
                                                                    pad=[1, 1, 1, 1], group=4),
             c(g, rng, (4, 1, 1), "slope"), activation="prelu")
    return [y, r]


@sample("conv_transpose")
def _deconv(g, x, rng):
    return [g.op("conv_transpose", x, c(g, rng, (4, 3, 3, 3), "tw"), c(g, rng, (6,), "tb"), stride=[2, 2],
                 pad=[1, 1, 0, 0], group=2, output_padding=[1, 0])]


@sample("fully_connected", "gemm", "matmul", "flatten")
def _fc(g, x, rng):
    f = g.op("flatten", x)
    y = g.op("fully_connected", f, c(g, rng, (5, 64), "fw"), c(g, rng, (5,), "fb"), activation="relu6")
    z = g.op("gemm", y, c(g, rng, (3, 5), "gw"), c(g, rng, (3,), "gc"), trans_b=True, alpha=0.5)
    return [z, g.op("matmul", z, c(g, rng, (3, 2), "mw"))]


@sample("batch_norm", "scale", "bias", "lrn", "normalize", "softmax", "log_softmax")
def _norm(g, x, rng):
    y = g.op("batch_norm", x, *(c(g, rng, (4,), n, low=0.1) for n in ("s", "b", "m", "v")), eps=1e-3)
    y = g.op("scale", y, c(g, rng, (4,), "ss"), c(g, rng, (4,), "sb"))
    y = g.op("bias", y, c(g, rng, (4, 4), "bb"), axis=1)
    y = g.op("lrn", y, size=3, region="within")
    y = g.op("lrn", y, size=3, alpha=0.01)
    y = g.op("normalize", y, c(g, rng, (4,), "ns", low=0.5), channel_shared=False, across_spatial=False)
    return [g.op("softmax", y, axis=1), g.op("log_softmax", y, axis=-1)]


@sample("max_pool", "avg_pool", "global_avg_pool", "global_max_pool")
def _pool(g, x, rng):
    return [g.op("max_pool", x, kernel=[3, 3], stride=[2, 2], ceil_mode=True, pad=[1, 1, 1, 1]),
            g.op("avg_pool", x, kernel=[2, 3], stride=[1, 2], pad=[1, 0, 0, 1], count_include_pad=True),
            g.op("global_avg_pool", x), g.op("global_max_pool", x)]


_UNARY = ["relu", "sigmoid", "tanh", "hard_swish", "abs", "exp", "neg", "softplus"]


@sample(*_UNARY, "leaky_relu", "clip", "hard_sigmoid", "elu", "power", "log", "sqrt", "reciprocal", "prelu")
def _act(g, x, rng):
    outs = [g.op(op, x) for op in _UNARY]
    outs.append(g.op("leaky_relu", x, alpha=0.2))
    outs.append(g.op("clip", x, min=-0.5, max=0.5))
    outs.append(g.op("hard_sigmoid", x, alpha=0.3, beta=0.4))
    outs.append(g.op("elu", x, alpha=0.7))
    pos = g.op("add", g.op("abs", x), c(g, rng, (1,), "one", low=1.0))
    outs += [g.op("power", pos, power=2.0, scale=0.5, shift=1.0), g.op("log", pos), g.op("sqrt", pos),
             g.op("reciprocal", pos), g.op("prelu", x, c(g, rng, (4, 1, 1), "ps"))]
    return outs


@sample("add", "sub", "mul", "div", "max", "min", "pow", "eltwise")
def _binary(g, x, rng):
    k = c(g, rng, (4, 1, 1), "bk", low=0.5)
    outs = [g.op(op, x, k) for op in ("sub", "mul", "div", "max", "min")]
    outs.append(g.op("add", x, k, activation="leaky_relu", act_alpha=0.1))
    outs.append(g.op("pow", g.op("abs", x), k))
    outs.append(g.op("eltwise", x, x, x, op="sum", coeffs=[1.0, -2.0, 0.5]))
    outs.append(g.op("eltwise", x, k, op="max"))
    return outs


@sample("concat", "split", "slice", "reshape", "transpose", "squeeze", "unsqueeze", "pad", "identity", "dropout")
def _tensor(g, x, rng):
    cat = g.op("concat", x, x, axis=1)
    parts = g.add_node("split", [cat], {"axis": 1, "sizes": [3, 5]}).outputs
    s = g.op("slice", parts[1], starts=[1, -1], ends=[4, 0], axes=[1, 2], steps=[1, -2])
    r = g.op("reshape", s, shape=[0, -1])
    t = g.op("transpose", x, perm=[0, 2, 3, 1])
    u = g.op("unsqueeze", t, axes=[0])
    q = g.op("squeeze", u, axes=[0])
    p = g.op("pad", x, pads=[0, 0, 1, 2, 0, 0, 2, 1], mode="reflect")
    p2 = g.op("pad", x, pads=[0, 1, 0, -1, 0, 0, 1, 0], value=0.5)
    return [parts[0], r, q, p, p2, g.op("identity", x), g.op("dropout", x, ratio=0.3)]


@sample("shape", "gather", "cast", "reduce_mean", "reduce_sum", "reduce_max", "reduce_min")
def _shape(g, x, rng):
    sh = g.op("shape", x, start=1)
    idx = g.add_const(np.array([0, -1], np.int64), "gi", "i64")
    gathered = g.op("gather", sh, idx)
    outs = [g.op("cast", gathered, to="f32"), g.op("gather", x, idx, axis=2)]
    outs += [g.op(op, x, axes=[2, 3], keepdims=False) for op in ("reduce_mean", "reduce_sum")]
    outs += [g.op(op, x, axes=[1]) for op in ("reduce_max", "reduce_min")]
    return outs


@sample("resize")
def _resize(g, x, rng):
    return [g.op("resize", x, scales=[1.0, 1.0, 2.0, 1.5], mode="linear", coordinate_transformation_mode="half_pixel"),
            g.op("resize", x, sizes=[1, 4, 3, 5], nearest_mode="round_prefer_ceil")]


@sample("prior_box", "detection_output")
def _ssd(g, x, rng):
    img = g.add_input("image", TensorType((1, 3, 32, 32)))
    prior = g.op("prior_box", x, img, min_sizes=[8.0], max_sizes=[16.0], aspect_ratios=[2.0], clip=True,
                 variance=[0.1, 0.1, 0.2, 0.2])
    n = prior.type.shape[2] // 4
    loc = g.op("mul", c(g, rng, (1, n * 4), "loc"), g.op("reduce_mean", x, keepdims=False))
    conf = g.op("softmax", g.op("mul", c(g, rng, (1, n, 3), "conf"), c(g, rng, (1,), "cs", low=2.0)), axis=2)
    conf = g.op("reshape", conf, shape=[1, -1])
    return [g.op("detection_output", loc, conf, prior, num_classes=3, keep_top_k=5, confidence_threshold=0.2)]


@sample("quantize", "dequantize", "requantize")
def _quant(g, x, rng):
    q = g.op("quantize", x, dtype="i8", scale=[0.05], zero_point=[3])
    rq = g.op("requantize", q, dtype="u8", scale=[0.1, 0.2, 0.1, 0.05], zero_point=[128, 120, 128, 128], axis=1)
    fx = g.op("quantize", x, dtype="fx16_8")
    return [g.op("dequantize", q), g.op("dequantize", rq), g.op("dequantize", fx)]


@sample("layout_convert")
def _layout(g, x, rng):
    nhwc = g.op("layout_convert", x, src="NCHW", dst="NHWC")
    r = g.op("relu", nhwc)
    blocked = g.op("layout_convert", r, src="NHWC", dst="NCHW8c")
    return [g.op("layout_convert", blocked, src="NCHW8c", dst="NCHW", channels=4)]


def every_op_graph(seed: int = 0) -> Graph:
    """A graph using every registered op (input: f32[1,4,4,4])."""
    rng = np.random.default_rng(seed)
    g = Graph("every_op")
    x = g.add_input("x", TensorType((1, 4, 4, 4)))
    outs: list[Value] = []
    for fn in dict.fromkeys(SAMPLES.values()):
        outs += fn(g, x, rng)
    g.set_outputs(outs)
    g.verify()
    return g
