"""Shape inference equals the shape the reference kernels actually produce, for every op."""

from __future__ import annotations

import numpy as np
from lpdc.backends.numpy import compile_numpy
from lpdc.ir import Graph, TensorType, dtypes, random_inputs
from op_samples import every_op_graph


def test_inferred_types_match_executed_arrays_for_every_op():
    g = every_op_graph()
    seen: dict[str, set[str]] = {}

    def observe(node, outs):
        for v, arr in zip(node.outputs, outs, strict=True):
            assert arr.shape == v.type.shape, f"{node.op} {node.name}: ran {arr.shape}, inferred {v.type.shape}"
            assert arr.dtype == dtypes.to_numpy(v.type.dtype), f"{node.op}: dtype {arr.dtype} vs {v.type.dtype}"
        seen.setdefault(node.op, set()).add(node.name)

    rng = np.random.default_rng(0)
    outs = compile_numpy(g).run({"x": rng.standard_normal((1, 4, 4, 4)).astype(np.float32),
                                 "image": np.zeros((1, 3, 32, 32), np.float32)}, observer=observe)
    assert set(seen) == {n.op for n in g.nodes}
    assert len(outs) == len(g.outputs)
    for name, arr in outs.items():
        if arr.dtype.kind == "f" and name not in ("log", "sqrt"):
            assert np.isfinite(arr).all(), name


def test_every_op_has_a_flop_count_that_is_non_negative():
    g = every_op_graph()
    for node in g.nodes:
        counts = node.schema.flops([v and v.type for v in node.inputs], [v.type for v in node.outputs], node.attrs)
        assert min(counts.mul, counts.add, counts.div, counts.cmp, counts.other) >= 0, node.op
        assert node.schema.bytes([v and v.type for v in node.inputs], [v.type for v in node.outputs]) >= 0
    conv = next(n for n in g.nodes if n.op == "conv")
    # 1x4x3x1 outputs, each a dot of (4/2)*3*3 = 18 products.
    f = conv.schema.flops([v and v.type for v in conv.inputs], [conv.output.type], conv.attrs)
    assert f.mul == 12 * 18


def test_random_inputs_follow_each_input_type_and_the_seed():
    """The feeds the CLI, benches and checks use when none are given: typed, seeded, reproducible."""
    g = Graph("feeds")
    g.add_input("x", TensorType((2, 3), "f32"))
    g.add_input("h", TensorType((4,), "f16"))
    g.add_input("idx", TensorType((5,), "i64"))
    g.add_input("mask", TensorType((64,), "bool"))
    a, b, c = random_inputs(g, seed=3), random_inputs(g, seed=3), random_inputs(g, seed=4)
    assert {k: (v.shape, v.dtype) for k, v in a.items()} == {
        "x": ((2, 3), np.float32), "h": ((4,), np.float16), "idx": ((5,), np.int64), "mask": ((64,), np.bool_)}
    assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["x"], c["x"])
    assert 0 <= a["idx"].min() and a["idx"].max() < 10 and 0 < a["mask"].sum() < 64
