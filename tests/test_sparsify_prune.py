"""Pruning (passes/sparsify): magnitude and channel pruning, shape surgery, the API and the CLI."""

from __future__ import annotations

import lpdc
import numpy as np
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.errors import LpdcError
from lpdc.ir import Graph, TensorType
from lpdc.passes.sparsify import channel_prune, prunable_convs, sparsity_report
from lpdc.passes.sparsify.channel_plan import NotPrunable, plan_channels
from lpdc.passes.sparsify.formats import format_bytes, sparsity_of
from lpdc.tools.zoo import build


def _run(g: Graph, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    feed = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    return next(iter(compile_numpy(g).run(feed).values()))


def _weights(g: Graph) -> dict[str, np.ndarray]:
    return {n.name: g.const_data(n.inputs[1]) for n in g.nodes if n.op in ("conv", "fully_connected")}


@pytest.mark.parametrize("sparsity", [0.5, 0.9])
def test_magnitude_prune_hits_target_and_keeps_largest(sparsity: float) -> None:
    g = build("lenet")
    p = lpdc.prune(g, sparsity=sparsity)
    before, after = _weights(g), _weights(p)
    for name, w in after.items():
        assert abs(sparsity_of(w) - sparsity) < 1e-3, name
        kept = np.abs(before[name])[w != 0]
        dropped = np.abs(before[name])[w == 0]
        assert kept.min() >= dropped.max()  # only the smallest magnitudes go
        np.testing.assert_array_equal(w[w != 0], before[name][w != 0])
    assert all(sparsity_of(w) < 0.01 for w in before.values())  # the input graph is untouched
    p.verify()


def test_magnitude_prune_global_and_layers() -> None:
    g = build("lenet")
    p = lpdc.prune(g, 0.8, scope="global")
    total = sum(w.size for w in _weights(p).values())
    zeros = sum(w.size - np.count_nonzero(w) for w in _weights(p).values())
    assert abs(zeros / total - 0.8) < 1e-3
    assert len({round(sparsity_of(w), 2) for w in _weights(p).values()}) > 1  # layers differ
    only = lpdc.prune(g, 0.9, layers=["ip1"])
    s = {k: sparsity_of(w) for k, w in _weights(only).items()}
    assert s["ip1"] == pytest.approx(0.9, abs=1e-3) and s["conv1"] < 0.01


@pytest.mark.parametrize("bad", [dict(sparsity=1.0), dict(sparsity=-0.1), dict(sparsity="x"),
                                 dict(method="random"), dict(layers=["nope"]), dict(scope="row")])
def test_prune_rejects_bad_options(bad: dict) -> None:
    with pytest.raises(LpdcError):
        lpdc.prune(build("tiny_cnn"), **{"sparsity": 0.5, **bad})


def test_channel_prune_resnet18_only_inner_convs() -> None:
    g = build("resnet18")
    names = [n.name for n in prunable_convs(g)]
    assert names == [f"layer{i}.{j}/conv1" for i in range(1, 5) for j in range(2)]
    p = channel_prune(g, 0.5)
    p.verify()
    convs = {n.name: n for n in p.nodes if n.op == "conv"}
    for name in names:
        inner = convs[name]
        o = g.const_data(next(n for n in g.nodes if n.name == name).inputs[1]).shape[0]
        assert inner.inputs[1].type.shape[0] == o // 2
        assert inner.outputs[0].type.shape[1] == o // 2
        consumer = convs[name.replace("conv1", "conv2")]
        assert consumer.inputs[1].type.shape[1] == o // 2
        assert consumer.outputs[0].type.shape[1] == o  # the residual side keeps its width
    bn = next(n for n in p.nodes if n.name == "layer1.0/conv1/bn")
    assert all(v.type.shape == (32,) for v in bn.inputs[1:])
    y = _run(p)
    assert y.shape == (1, 1000) and np.isfinite(y).all()


def test_channel_prune_matches_zeroed_filters() -> None:
    """Removing a filter equals zeroing it when nothing downstream adds a constant (no bias)."""
    g = Graph("chain")
    rng = np.random.default_rng(1)
    x = g.add_input("x", TensorType((1, 3, 8, 8)))
    w1 = g.add_const(rng.standard_normal((6, 3, 3, 3)).astype(np.float32), "w1")
    c1 = g.op("conv", x, w1, name="c1", pad=[1, 1, 1, 1], activation="relu")
    p1 = g.op("max_pool", c1, name="p1", kernel=[2, 2], stride=[2, 2])
    w2 = g.add_const(rng.standard_normal((4, 6, 3, 3)).astype(np.float32), "w2")
    c2 = g.op("conv", p1, w2, name="c2", pad=[1, 1, 1, 1])
    f = g.op("flatten", c2, name="f", axis=1)
    wf = g.add_const(rng.standard_normal((5, 64)).astype(np.float32), "wf")
    g.set_outputs([g.op("fully_connected", f, wf, name="fc")])
    p = channel_prune(g, 0.5)
    assert [n.inputs[1].type.shape for n in p.nodes if n.op in ("conv", "fully_connected")] == \
        [(3, 3, 3, 3), (2, 3, 3, 3), (5, 32)]
    # the same function with the pruned filters zeroed instead of removed
    z = g.copy()
    for name, keep_o in (("c1", 3), ("c2", 2)):
        node = next(n for n in z.nodes if n.name == name)
        w = z.const_data(node.inputs[1]).copy()
        score = np.abs(w.reshape(w.shape[0], -1)).sum(1)
        w[np.argsort(score, kind="stable")[:w.shape[0] - keep_o]] = 0
        z.params[node.inputs[1].producer.attrs["param"]] = w
    ref, got = _run(z), _run(p)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-6


def test_residual_and_outputs_are_not_prunable() -> None:
    g = build("resnet18")
    conv2 = next(n for n in g.nodes if n.name == "layer1.0/conv2")
    with pytest.raises(NotPrunable, match="add"):
        plan_channels(g, conv2, np.array([0]))


def test_channel_prune_through_depthwise_mobilenet() -> None:
    g = build("mobilenet_v1")
    p = channel_prune(g, 0.25)
    p.verify()
    dw = [n for n in p.nodes if n.op == "conv" and n.attrs["group"] > 1]
    assert any(n.attrs["group"] < n0.attrs["group"]
               for n, n0 in zip(dw, [m for m in g.nodes if m.op == "conv" and m.attrs["group"] > 1], strict=True))
    assert all(n.attrs["group"] == n.inputs[0].type.shape[1] for n in dw)
    assert np.isfinite(_run(p)).all()


def test_format_bytes() -> None:
    w = np.zeros((8, 8), np.float32)
    w[0, :4] = 1.0  # one 4x4 block holds all 4 non-zeros
    b = format_bytes(w)
    assert b["dense"] == 256 and b["csr"] == 4 * 4 + 4 * 4 + 9 * 4 and b["coo"] == 4 * 12
    assert b["bsr"] == 16 * 4 + 4 + 3 * 4
    assert format_bytes(w, bits=8)["dense"] == 64


def test_report_and_cli(tmp_path, capsys) -> None:
    from lpdc.tools.cli import main

    p = lpdc.prune(build("lenet"), 0.9)
    rows = sparsity_report(p, {"ip1": "spmv@-"})
    ip1 = next(r for r in rows if r.name == "ip1")
    assert ip1.sparsity == pytest.approx(0.9, abs=1e-3) and ip1.sparse_bytes < ip1.dense_bytes / 4
    assert ip1.primitive == "spmv@-"
    out = tmp_path / "p.onnx"
    assert main(["prune", "zoo:lenet", "--sparsity", "0.75", "--costs", "model", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ip1" in text and "75.0%" in text and out.exists()
    back = lpdc.load(str(out))
    w = {n.name: back.const_data(n.inputs[1]) for n in back.nodes if n.op == "fully_connected"}
    assert any(sparsity_of(a) > 0.7 for a in w.values() if a is not None)
    assert main(["prune", "zoo:lenet", "--method", "channel", "--sparsity", "0.5", "--no-select"]) == 0
    assert main(["prune", "zoo:lenet", "--sparsity", "2"]) == 1


def test_channel_prune_through_concat() -> None:
    """Pruned channels of one concat operand map to the right input channels of the consumer."""
    g = Graph("fire")
    rng = np.random.default_rng(3)
    x = g.add_input("x", TensorType((1, 4, 6, 6)))
    wa = g.add_const(rng.standard_normal((4, 4, 1, 1)).astype(np.float32), "wa")
    wb = g.add_const(rng.standard_normal((6, 4, 3, 3)).astype(np.float32), "wb")
    a = g.op("conv", x, wa, name="a", activation="relu")
    b = g.op("conv", x, wb, name="b", pad=[1, 1, 1, 1], activation="relu")
    cat = g.op("concat", a, b, name="cat", axis=1)
    wc = g.add_const(rng.standard_normal((3, 10, 1, 1)).astype(np.float32), "wc")
    g.set_outputs([g.op("conv", cat, wc, name="c")])
    p = channel_prune(g, 0.5, layers=["a", "b"])
    shapes = {n.name: n.inputs[1].type.shape for n in p.nodes if n.op == "conv"}
    assert shapes == {"a": (2, 4, 1, 1), "b": (3, 4, 3, 3), "c": (3, 5, 1, 1)}
    z = g.copy()
    for name in ("a", "b"):
        node = next(n for n in z.nodes if n.name == name)
        w = z.const_data(node.inputs[1]).copy()
        score = np.abs(w.reshape(w.shape[0], -1)).sum(1)
        w[np.argsort(score, kind="stable")[:w.shape[0] // 2]] = 0
        z.params[node.inputs[1].producer.attrs["param"]] = w
    ref, got = _run(z), _run(p)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max() + 1e-6
