"""Depthwise + 1x1 conv fusion (dw_pw_fusion.py): fused kernels against the NumPy reference and the
unfused build, the cases that must stay apart, both runners, artifacts, concat windows, sparsity."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

import lpdc  # noqa: E402
from lpdc.backends.tvm.artifact import load_tvm_artifact, save_tvm_artifact  # noqa: E402
from lpdc.ir import Graph, Value  # noqa: E402
from lpdc.tools.builder import NetBuilder  # noqa: E402
from test_tvm_program import assert_close, feeds_for  # noqa: E402


def fused_pairs(exe) -> list[tuple[str, str]]:
    """(depthwise, 1x1) node names of every step that runs a fused kernel."""
    return [(s.node.name, s.fused[0].name) for s in exe.plan.steps
            if s.func is not None and exe.plan.kernels[s.func].schedule == "dw_pw"]


def separable(b: NetBuilder, x: Value, out: int, stride: int = 1, act: str = "relu6", name: str = "sep",
              dw_bias: bool = True) -> Value:
    """depthwise 3x3 (+BN, activation) -> 1x1 conv (+BN): MobileNet's pair."""
    c = x.type.shape[1]
    y = b.bn(b.conv(x, c, 3, stride=stride, pad=1, group=c, bias=dw_bias, name=f"{name}/dw"), name=f"{name}/dw/bn")
    if act == "relu6":
        y = b.act(y, "clip", name=f"{name}/dw/relu6", min=0.0, max=6.0)
    elif act != "none":
        y = b.act(y, act, name=f"{name}/dw/{act}")
    return b.bn(b.conv(y, out, 1, bias=False, name=f"{name}/pw"), name=f"{name}/pw/bn")


def block_net(c: int, hw: int, stride: int, k: int, act: str = "relu6", residual: bool = False,
              dw_bias: bool = True) -> Graph:
    b = NetBuilder("sep", (1, c, hw, hw), seed=c + hw + k)
    x = b.act(b.conv(b.x, c, 1, name="stem"))  # the block reads a computed NHWC activation, as in a model
    y = separable(b, x, k, stride, act, dw_bias=dw_bias)
    if residual:
        y = b.g.op("add", y, x, name="res")
    return b.finish(b.act(y, name="out_relu"))


def check(g: Graph, **options) -> tuple:
    feeds = feeds_for(g)
    ref = lpdc.compile(g, "numpy").run(feeds)
    fused = lpdc.compile(g, "x86", **options)
    apart = lpdc.compile(g, "x86", fuse_depthwise=False, **options)
    got = fused.run(feeds)
    assert_close(got, ref)
    assert_close(apart.run(feeds), ref)
    assert not fused_pairs(apart)
    return fused, got, feeds


@pytest.mark.parametrize(("c", "hw", "stride", "k", "act", "residual", "dw_bias"), [
    (32, 28, 1, 64, "relu6", False, True),   # MobileNet v1's shape of pair
    (96, 29, 2, 24, "relu6", False, True),   # stride 2, odd size (15 columns: tiles of 5), K padded to the tile
    (24, 20, 1, 24, "relu", True, False),    # 24 channels (12-lane vectors), residual add fused into the 1x1
    (40, 16, 1, 80, "none", False, True),    # no activation between the two
])
def test_fused_pair_matches_reference(c: int, hw: int, stride: int, k: int, act: str, residual: bool,
                                      dw_bias: bool) -> None:
    fused, _, _ = check(block_net(c, hw, stride, k, act, residual, dw_bias))
    assert fused_pairs(fused) == [("sep/dw", "sep/pw")]
    assert "sep/pw" not in {s.node.name for s in fused.plan.steps}  # the 1x1 conv has no step of its own
    assert fused.runner == "static"


def _dw_read_twice() -> Graph:
    b = NetBuilder("twice", (1, 32, 16, 16), seed=1)
    x = b.act(b.conv(b.x, 32, 1, name="stem"))
    d = b.conv(x, 32, 3, pad=1, group=32, name="dw")
    return b.finish(b.g.op("add", b.conv(d, 32, 1, name="pw"), d, name="sum"))


def _dw_is_output() -> Graph:
    b = NetBuilder("out", (1, 32, 16, 16), seed=2)
    x = b.act(b.conv(b.x, 32, 1, name="stem"))
    d = b.conv(x, 32, 3, pad=1, group=32, name="dw")
    return b.finish(b.conv(d, 48, 1, name="pw"), d)


def _consumer_not_1x1(k: int, stride: int, hw: int = 16) -> Graph:
    b = NetBuilder("not1x1", (1, 32, hw, hw), seed=3)
    x = b.act(b.conv(b.x, 32, 1, name="stem"))
    d = b.conv(x, 32, 3, pad=1, group=32, name="dw")
    return b.finish(b.conv(d, 48, k, stride=stride, pad=k // 2, name="pw"))


@pytest.mark.parametrize("make", [
    _dw_read_twice,                       # the depthwise result is needed again after the 1x1
    _dw_is_output,                        # ... or is a graph output
    lambda: _consumer_not_1x1(3, 1),      # a 3x3 consumer reads three depthwise rows
    lambda: _consumer_not_1x1(1, 2),      # a strided 1x1 skips rows
    lambda: _consumer_not_1x1(1, 1, 7),   # 7 rows: the 1x1 runs channel tiles outermost, no row loop to share
], ids=["read-twice", "graph-output", "3x3", "stride-2", "7x7"])
def test_pairs_that_stay_apart(make) -> None:
    fused, _, _ = check(make())
    assert not fused_pairs(fused)


def _two_pairs(fallback: bool = False) -> Graph:
    b = NetBuilder("two", (1, 16, 32, 32), seed=4)
    x = b.act(b.conv(b.x, 16, 1, name="stem"))
    e = b.act(b.conv(x, 32, 1, name="a/expand"))  # MobileNet v2's block: expand, depthwise, project + x
    y = b.g.op("add", separable(b, e, 16, 1, name="a"), x, name="a/res")  # x: read by the fused kernel
    y = separable(b, b.act(y), 64, 2, name="b")
    if fallback:  # an op with no TVM kernel: the run takes the general loop
        y = b.g.op("lrn", y, name="norm", size=3, alpha=1e-4, beta=0.75, region="within")
    return b.finish(y)


def test_static_runner_and_artifact_replay(tmp_path) -> None:
    fast, got, feeds = check(_two_pairs())
    assert len(fused_pairs(fast)) == 2 and fast.runner == "static"
    _, timings = fast.profile(feeds, repeats=2)
    assert [t.name for t in timings] == [s.node.name for s in fast.plan.steps]
    assert {t.name: t.fused for t in timings if t.fused} == {"a/dw": ("a/pw",), "b/dw": ("b/pw",)}
    back = load_tvm_artifact(save_tvm_artifact(fast, tmp_path / "art"))
    assert fused_pairs(back) == fused_pairs(fast)
    for k, v in back.run(feeds).items():
        np.testing.assert_array_equal(v, got[k])


def test_general_runner_frees_what_fused_nodes_read() -> None:
    g = _two_pairs(fallback=True)
    general, got, feeds = check(g)
    assert general.runner == "general" and len(fused_pairs(general)) == 2
    # A memory-planned build keeps the pairs apart: its arena is laid out for the graph's own nodes.
    planned = lpdc.compile(g, "x86", plan_memory=True)
    assert not fused_pairs(planned)
    assert_close(planned.run(feeds), got)
    assert planned.arena_misses == []


def test_fused_pairs_write_into_an_elided_concat() -> None:
    b = NetBuilder("cat", (1, 16, 16, 16), seed=5)
    x = b.act(b.conv(b.x, 16, 1, name="stem"))
    cat = b.g.op("concat", separable(b, x, 16, name="l"), separable(b, x, 32, name="r"), name="cat", axis=1)
    fused, _, _ = check(b.finish(b.conv(cat, 16, 1, name="head")))
    assert len(fused_pairs(fused)) == 2
    assert not any(s.node.op == "concat" for s in fused.plan.steps)  # both fused kernels write its windows


def test_a_sparse_1x1_keeps_its_sparse_kernel() -> None:
    g = block_net(32, 16, 1, 64)
    pw = next(n for n in g.nodes if n.name == "sep/pw")
    w = g.const_data(pw.inputs[1]).copy()
    w[np.random.default_rng(0).random(w.shape) < 0.9] = 0.0  # 90% pruned
    pw.set_input(1, g.add_const(w, "sep/pw.w.pruned"))
    g.toposort()
    fused, _, _ = check(g, sparse="on")
    assert not fused_pairs(fused)
    assert fused.sparse_choices["sep/pw"]["picked"] == "sparse"


def test_measured_variants_keep_the_pair_fused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LPDC_TVM_TIMES", str(tmp_path / "times.json"))
    tuned, got, feeds = check(block_net(32, 16, 1, 48), variants="measure")
    assert fused_pairs(tuned) == [("sep/dw", "sep/pw")]
    labels = tuned.variant_choices["sep/pw"]["times"]
    assert len(labels) > 1 and all(label.endswith("rows-outer") for label in labels)  # only tiles that fuse
    back = load_tvm_artifact(save_tvm_artifact(tuned, tmp_path / "art"))
    assert fused_pairs(back) == fused_pairs(tuned)
    for k, v in back.run(feeds).items():
        np.testing.assert_array_equal(v, got[k])
