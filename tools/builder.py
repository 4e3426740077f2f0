"""A small layer-by-layer builder for IR graphs with deterministic random weights.

Used by the model zoo and tests: `b = NetBuilder("net", (1, 3, 32, 32)); y = b.conv(b.x, 16, 3, pad=1)`.
Weights are He-initialised from one seeded generator so outputs stay in a sane range.
"""

from __future__ import annotations

import numpy as np

from ..ir import Graph, TensorType, Value


class NetBuilder:
    """Adds common layers to a graph; every method returns the new output value."""

    def __init__(self, name: str, input_shape: tuple[int, ...], seed: int = 0, input_name: str = "data") -> None:
        self.g = Graph(name)
        self.rng = np.random.default_rng(seed)
        self.x = self.g.add_input(input_name, TensorType(tuple(input_shape), "f32"))
        self._count: dict[str, int] = {}

    def name(self, kind: str, name: str | None = None) -> str:
        if name:
            return name
        self._count[kind] = self._count.get(kind, 0) + 1
        return f"{kind}{self._count[kind]}"

    def weight(self, name: str, shape: tuple[int, ...], fan_in: int) -> Value:
        w = self.rng.standard_normal(shape) * np.sqrt(2.0 / max(fan_in, 1))
        return self.g.add_const(w.astype(np.float32), name)

    def conv(self, x: Value, out_ch: int, k: int | tuple[int, int], stride: int = 1, pad: int | list[int] = 0,
             group: int = 1, dilation: int = 1, bias: bool = True, name: str | None = None) -> Value:
        name = self.name("conv", name)
        kh, kw = (k, k) if isinstance(k, int) else k
        cin = x.type.shape[1]
        w = self.weight(f"{name}.w", (out_ch, cin // group, kh, kw), cin // group * kh * kw)
        b = self.g.add_const((self.rng.standard_normal(out_ch) * 0.1).astype(np.float32), f"{name}.b") if bias else None
        pads = [pad] * 4 if isinstance(pad, int) else list(pad)
        return self.g.op("conv", x, w, b, name=name, stride=[stride, stride], pad=pads, group=group,
                         dilation=[dilation, dilation])

    def bn(self, x: Value, name: str | None = None, eps: float = 1e-5) -> Value:
        name = self.name("bn", name)
        c = x.type.shape[1]
        r = self.rng
        scale = self.g.add_const((1 + 0.2 * r.standard_normal(c)).astype(np.float32), f"{name}.scale")
        bias = self.g.add_const((0.1 * r.standard_normal(c)).astype(np.float32), f"{name}.bias")
        mean = self.g.add_const((0.1 * r.standard_normal(c)).astype(np.float32), f"{name}.mean")
        var = self.g.add_const((0.5 + r.random(c)).astype(np.float32), f"{name}.var")
        return self.g.op("batch_norm", x, scale, bias, mean, var, name=name, eps=eps)

    def fc(self, x: Value, out: int, name: str | None = None) -> Value:
        name = self.name("fc", name)
        k = int(np.prod(x.type.shape[1:]))
        w = self.weight(f"{name}.w", (out, k), k)
        b = self.g.add_const((self.rng.standard_normal(out) * 0.1).astype(np.float32), f"{name}.b")
        return self.g.op("fully_connected", x, w, b, name=name)

    def act(self, x: Value, op: str = "relu", name: str | None = None, **attrs) -> Value:
        return self.g.op(op, x, name=self.name(op, name), **attrs)

    def pool(self, x: Value, kind: str, k: int, stride: int, pad: int = 0, ceil_mode: bool = False,
             name: str | None = None) -> Value:
        return self.g.op(f"{kind}_pool", x, name=self.name(f"{kind}pool", name), kernel=[k, k], stride=[stride, stride],
                         pad=[pad] * 4, ceil_mode=ceil_mode)

    def finish(self, *outputs: Value) -> Graph:
        self.g.set_outputs(outputs)
        self.g.verify()
        return self.g
