"""Random valid CNN graphs for differential testing: `random_cnn(seed) -> Graph`.

Each graph is tiny (batch 1, 1-8 channels, 4-12 pixels a side) and built from a random chain of
blocks: convolutions with random groups / dilation / stride / asymmetric padding, depthwise
convolutions, max/avg pooling, ReLU / leaky ReLU / sigmoid / clip, batch norm, broadcast adds,
concatenated branches and residual branches, optionally ending in a fully connected head with
softmax. Every choice is drawn from one seeded generator, so a failing seed reproduces exactly.
The shapes are chosen so every op is valid; the IR's type inference checks that as it builds.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, Value
from .builder import NetBuilder

BLOCKS = ("conv", "depthwise", "pool", "act", "bn", "add_const", "concat", "residual")


def random_cnn(seed: int, max_blocks: int = 6) -> Graph:
    """A random valid CNN (see the module docstring); the same seed gives the same graph."""
    rng = np.random.default_rng(seed)
    c, h, w = int(rng.integers(1, 9)), int(rng.integers(4, 13)), int(rng.integers(4, 13))
    b = NetBuilder(f"rand{seed}", (1, c, h, w), seed=seed)
    x = b.x
    for _ in range(int(rng.integers(1, max_blocks + 1))):
        kind = str(rng.choice(BLOCKS))
        x = _BLOCK[kind](b, rng, x)
    outputs = [x]
    if rng.random() < 0.5:
        if rng.random() < 0.5:
            x = b.g.op("global_avg_pool", x)
        y = b.fc(x, int(rng.integers(1, 11)))
        outputs = [b.g.op("softmax", y, axis=1) if rng.random() < 0.7 else y]
    return b.finish(*outputs)


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _conv_geometry(rng: np.random.Generator, h: int, w: int) -> dict:
    """Kernel, stride, dilation and padding that leave at least one output pixel each way."""
    while True:
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        stride, dil = int(rng.integers(1, 3)), int(rng.integers(1, 3))
        pad = [int(p) for p in rng.integers(0, 3, size=4)]  # top, left, bottom, right
        eh, ew = dil * (kh - 1) + 1, dil * (kw - 1) + 1
        if h + pad[0] + pad[2] >= eh and w + pad[1] + pad[3] >= ew:
            return {"k": (kh, kw), "stride": stride, "dilation": dil, "pad": pad}


def _conv(b: NetBuilder, rng: np.random.Generator, x: Value, out_ch: int | None = None, group: int | None = None,
          **fixed) -> Value:
    cin, h, w = x.type.shape[1:]
    geo = _conv_geometry(rng, h, w) | fixed
    if out_ch is None:
        out_ch = int(rng.integers(1, 9))
    if group is None:  # a common divisor of both channel counts
        group = int(rng.choice([d for d in _divisors(cin) if out_ch % d == 0]))
    y = b.conv(x, out_ch, geo["k"], stride=geo["stride"], pad=geo["pad"], group=group, dilation=geo["dilation"],
               bias=bool(rng.random() < 0.8))
    return y


def _block_conv(b: NetBuilder, rng: np.random.Generator, x: Value) -> Value:
    return _conv(b, rng, x)


def _block_depthwise(b: NetBuilder, rng: np.random.Generator, x: Value) -> Value:
    cin = x.type.shape[1]
    return _conv(b, rng, x, out_ch=cin * int(rng.integers(1, 3)), group=cin)


def _block_pool(b: NetBuilder, rng: np.random.Generator, x: Value) -> Value:
    h, w = x.type.shape[2:]
    k = int(rng.integers(1, min(3, h, w) + 1))
    stride = int(rng.integers(1, 3))
    pad = [int(p) for p in rng.integers(0, k, size=4)]  # ONNX wants pads smaller than the kernel
    kind = str(rng.choice(["max", "avg"]))
    attrs = {"kernel": [k, k], "stride": [stride, stride], "pad": pad}
    if kind == "avg":
        attrs["count_include_pad"] = bool(rng.random() < 0.5)
    return b.g.op(f"{kind}_pool", x, name=b.name(f"{kind}pool"), **attrs)


def _block_act(b: NetBuilder, rng: np.random.Generator, x: Value) -> Value:
    kind = str(rng.choice(["relu", "leaky_relu", "sigmoid", "clip"]))
    if kind == "leaky_relu":
        return b.act(x, kind, alpha=float(rng.uniform(0.01, 0.5)))
    if kind == "clip":
        lo = float(rng.uniform(-2, 0))
        return b.act(x, kind, min=lo, max=lo + float(rng.uniform(0.5, 3)))
    return b.act(x, kind)


def _block_bn(b: NetBuilder, rng: np.random.Generator, x: Value) -> Value:
    return b.bn(x)


def _block_add_const(b: NetBuilder, rng: np.random.Generator, x: Value) -> Value:
    _, c, h, w = x.type.shape
    shape = [(1, c, 1, 1), (c, 1, 1), (1, 1, h, w), (w,), (), (1, c, h, w)][int(rng.integers(0, 6))]
    k = b.g.add_const(rng.standard_normal(shape).astype(np.float32) * 0.5, b.name("addk"))
    args = (x, k) if rng.random() < 0.5 else (k, x)  # broadcasting either way round
    return b.g.op("add", *args, name=b.name("add"))


def _block_concat(b: NetBuilder, rng: np.random.Generator, x: Value) -> Value:
    """Two (or three) branches with the same spatial output, concatenated over channels."""
    geo = _conv_geometry(rng, *x.type.shape[2:])
    branches = [_conv(b, rng, x, **geo) for _ in range(int(rng.integers(2, 4)))]
    if rng.random() < 0.3:
        branches[0] = b.act(branches[0], "relu")
    return b.g.op("concat", *branches, name=b.name("concat"), axis=1)


def _block_residual(b: NetBuilder, rng: np.random.Generator, x: Value) -> Value:
    """y = x + conv(relu(conv(x))) with shape-preserving 3x3 (or 1x1) convolutions."""
    cin = x.type.shape[1]
    k = int(rng.choice([1, 3]))
    same = {"k": (k, k), "stride": 1, "dilation": 1, "pad": [k // 2] * 4}
    y = _conv(b, rng, x, out_ch=cin, **same)
    y = b.act(y, "relu")
    y = _conv(b, rng, y, out_ch=cin, **same)
    if rng.random() < 0.5:
        y = b.bn(y)
    out = b.g.op("add", x, y, name=b.name("res"))
    return b.act(out, "relu") if rng.random() < 0.5 else out


_BLOCK = {"conv": _block_conv, "depthwise": _block_depthwise, "pool": _block_pool, "act": _block_act,
          "bn": _block_bn, "add_const": _block_add_const, "concat": _block_concat, "residual": _block_residual}
