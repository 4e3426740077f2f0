"""Hypothesis-generated graphs (chains and DAGs of conv / batch_norm / activations / add / concat /
pool / pad / scale, random shapes, groups, strides, dilations and pads) keep their reference
outputs through O2, and through each folding pass alone."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lpdc.errors import LpdcError
from lpdc.ir import Graph, TensorType, Value
from passes_util import assert_same_outputs, op_counts, optimise


class RandomNet:
    """Grows a random graph one layer at a time from hypothesis draws."""

    def __init__(self, data: st.DataObject, seed: int) -> None:
        self.draw = data.draw
        self.rng = np.random.default_rng(seed)
        self.g = Graph("random")
        shape = (1, self.draw(st.integers(1, 4)), self.draw(st.integers(4, 9)), self.draw(st.integers(4, 9)))
        self.values: list[Value] = [self.g.add_input("x", TensorType(shape))]

    def pick(self) -> Value:
        # favour recent values (chains) but reuse older ones too (DAGs, several users)
        i = self.draw(st.integers(0, len(self.values) - 1))
        return self.values[max(i, len(self.values) - 3) if self.draw(st.booleans()) else i]

    def const(self, shape: tuple[int, ...], low: float = -1.0, high: float = 1.0) -> Value:
        return self.g.add_const(self.rng.uniform(low, high, shape).astype(np.float32), "k")

    def conv(self, x: Value) -> Value:
        cin = x.type.shape[1]
        group = self.draw(st.sampled_from([d for d in (1, 2, 3, 4, cin) if cin % d == 0]))
        cout = group * self.draw(st.integers(1, 3))
        k, stride, dil = self.draw(st.integers(1, 3)), self.draw(st.integers(1, 2)), self.draw(st.integers(1, 2))
        pad = [self.draw(st.integers(0, k - 1)) for _ in range(4)]
        w = self.const((cout, cin // group, k, k))
        b = self.const((cout,)) if self.draw(st.booleans()) else None
        return self.g.op("conv", x, w, b, stride=[stride, stride], pad=pad, dilation=[dil, dil], group=group)

    def batch_norm(self, x: Value) -> Value:
        c = x.type.shape[1]
        var = self.rng.uniform(0.1, 2.0, c) if self.draw(st.booleans()) else np.zeros(c)
        return self.g.op("batch_norm", x, self.const((c,), 0.5, 2.0), self.const((c,)), self.const((c,)),
                         self.g.add_const(var.astype(np.float32), "var"), eps=1e-3)

    def activation(self, x: Value) -> Value:
        kind = self.draw(st.sampled_from(["relu", "relu6", "leaky_relu", "sigmoid", "prelu", "clip"]))
        if kind == "relu6":
            return self.g.op("clip", x, min=0.0, max=6.0)
        if kind == "clip":
            return self.g.op("clip", x, min=-0.5, max=0.5)
        if kind == "prelu":
            return self.g.op("prelu", x, self.const((x.type.shape[1], 1, 1), 0.0, 0.5))
        return self.g.op(kind, x, **({"alpha": 0.1} if kind == "leaky_relu" else {}))

    def join(self, x: Value) -> Value:
        same = [v for v in self.values if v.type.shape == x.type.shape and v is not x]
        spatial = [v for v in self.values if v.type.shape[2:] == x.type.shape[2:]]
        if same and self.draw(st.booleans()):
            return self.g.op("add", x, self.draw(st.sampled_from(same)))
        return self.g.op("concat", x, self.draw(st.sampled_from(spatial)), axis=1)

    def pool(self, x: Value) -> Value:
        k, stride = self.draw(st.integers(1, 3)), self.draw(st.integers(1, 2))
        kind = self.draw(st.sampled_from(["max_pool", "avg_pool"]))
        pad = [self.draw(st.integers(0, k - 1)) for _ in range(4)]
        if self.draw(st.booleans()):  # an explicit pad, which fold-pad may fold
            # -inf only where no window can lie wholly in padding (its output would be -inf)
            value = self.draw(st.sampled_from([0.0, float("-inf")])) if kind == "max_pool" and k > 1 else 0.0
            pad = [0, 0, 0, 0] if value else pad
            x = self.g.op("pad", x, pads=[0, 0, 1, 1, 0, 0, 1, 1], value=value)
        return self.g.op(kind, x, kernel=[k, k], stride=[stride, stride], pad=pad,
                         ceil_mode=self.draw(st.booleans()), count_include_pad=self.draw(st.booleans()))

    def affine(self, x: Value) -> Value:
        c = x.type.shape[1]
        op = self.draw(st.sampled_from(["scale", "mul", "add"]))
        if op == "scale":
            return self.g.op("scale", x, self.const((c,)), self.const((c,)))
        return self.g.op(op, x, self.const((1, c, 1, 1)))

    def grow(self, layers: int) -> Graph:
        makers = [self.conv, self.conv, self.batch_norm, self.activation, self.join, self.pool, self.affine]
        for _ in range(layers):
            make = self.draw(st.sampled_from(makers))
            try:
                v = make(self.pick())
            except LpdcError:  # e.g. a window larger than the input: draw the next layer
                continue
            if v.type.size > 0 and v.type.dtype == "f32":
                self.values.append(v)
        outs = [self.values[-1]] + ([self.values[len(self.values) // 2]] if self.draw(st.booleans()) else [])
        self.g.set_outputs(dict.fromkeys(outs))
        self.g.verify()
        return self.g


@settings(max_examples=40)
@given(data=st.data(), seed=st.integers(0, 2**16), layers=st.integers(2, 9))
def test_random_graphs_keep_outputs_through_o2(data: st.DataObject, seed: int, layers: int) -> None:
    g = RandomNet(data, seed).grow(layers)
    after = optimise(g, "O2")
    assert_same_outputs(g, after, what=f"random graph after O2\n{g}")
    assert len(after.nodes) <= len(g.nodes)
    assert [v.name for v in after.outputs] == [v.name for v in g.outputs]


@pytest.mark.parametrize("spec", ["fold-bn", "fuse-activation", "fuse-residual", "fold-pad"])
@settings(max_examples=10)
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_random_graphs_keep_outputs_through_each_fusion(spec: str, data: st.DataObject, seed: int) -> None:
    g = RandomNet(data, seed).grow(6)
    assert_same_outputs(g, optimise(g, spec), what=f"random graph after {spec}\n{g}")


def test_generator_produces_foldable_graphs() -> None:
    """The strategy is not vacuous: over a fixed set of seeds O2 removes batch norms and activations."""
    removed = 0

    @settings(max_examples=15, database=None)
    @given(data=st.data(), seed=st.integers(0, 2**16))
    def probe(data: st.DataObject, seed: int) -> None:
        nonlocal removed
        g = RandomNet(data, seed).grow(8)
        before, after = op_counts(g), op_counts(optimise(g, "O2"))
        removed += sum(before.values()) - sum(after.values())

    probe()
    assert removed > 5
