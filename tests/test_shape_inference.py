"""Shape inference equals the shape the reference kernels actually produce, for every op."""

from __future__ import annotations

import numpy as np
from lpdc.backends.numpy import compile_numpy
from lpdc.ir import dtypes
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
