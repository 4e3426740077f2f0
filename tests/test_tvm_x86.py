"""TVM backend on the host (x86): zoo models and layer variants against the NumPy reference.

Heavy zoo models run at 64x64 (their input re-typed, every node re-inferred) to keep TVM
compile and run time low; the full zoo at full resolution runs in bench/bench_tvm.py.
Outputs are compared before the final softmax (random weights can saturate it).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

import lpdc  # noqa: E402
from lpdc.errors import LpdcExecutionError  # noqa: E402
from lpdc.ir import Graph, TensorType  # noqa: E402
from lpdc.tools import zoo  # noqa: E402
from lpdc.tools.builder import NetBuilder  # noqa: E402


def at_resolution(g: Graph, hw: int | None) -> Graph:
    """`g` with its image input re-typed to hw x hw and the softmax head dropped (logits out)."""
    g = g.copy()
    if hw is not None:
        x = g.inputs[0]
        n, c = x.type.shape[:2]
        x.type = TensorType((n, c, hw, hw), x.type.dtype)
        for node in g.nodes:
            if node.op != "const":  # constants are typed by their data
                g.reinfer(node)
    outs = []
    for v in g.outputs:
        p = v.producer
        outs.append(p.inputs[0] if p is not None and p.op == "softmax" else v)
    g.set_outputs(outs)
    for node in [n for n in g.nodes if n.op == "softmax" and not n.output.users]:
        g.erase(node)
    g.verify()
    return g


def check(g: Graph, seed: int = 0) -> object:
    """Compile for x86, compare every output with the NumPy reference (1e-4 x max|ref|)."""
    x = np.random.default_rng(seed).standard_normal(g.inputs[0].type.shape).astype(np.float32)
    feeds = {g.inputs[0].name: x}
    ref = lpdc.compile(g, "numpy").run(feeds)
    exe = lpdc.compile(g, "x86")
    got = exe.run(feeds)
    for k, r in ref.items():
        assert got[k].shape == r.shape
        err = float(np.abs(got[k] - r).max())
        assert err <= 1e-4 * float(np.abs(r).max()) + 1e-6, f"{k}: max error {err}"
    return exe


ZOO = [("tiny_cnn", None), ("lenet", None), ("mobilenet_v2", 64), ("resnet18", 64), ("squeezenet1_1", 64)]


@pytest.mark.parametrize(("name", "hw"), ZOO, ids=[z[0] for z in ZOO])
def test_zoo_model_matches_reference(name: str, hw: int | None) -> None:
    exe = check(at_resolution(zoo.build(name), hw))
    assert exe.fallbacks == {}, exe.fallbacks  # every op of these models has a TVM kernel
    assert sum(1 for s in exe.plan.steps if s.func) >= 3


def _conv_net(act: str, **conv: object) -> Graph:
    b = NetBuilder("epi", (1, 8, 13, 11), seed=3)
    g = b.g
    w = b.weight("w", (24, 8 // int(conv.get("group", 1)), 3, 3), 72)
    bias = g.add_const(np.linspace(-0.5, 0.5, 24, dtype=np.float32), "b")
    res_src = b.conv(b.x, 24, 3, pad=1, name="side")
    ins = [b.x, w, bias, res_src]
    extra = {"act_alpha": 0.1, "act_beta": 0.6} if act in ("clip", "leaky_relu", "elu", "hard_sigmoid") else {}
    if act == "clip":
        extra = {"act_alpha": -0.3, "act_beta": 0.4}
    if act == "prelu":
        ins.append(g.add_const(np.linspace(0.05, 0.3, 24, dtype=np.float32).reshape(24, 1, 1), "slope"))
    y = g.op("conv", *ins, name="main", activation=act, pad=[1, 1, 1, 1], **extra, **conv)
    return b.finish(y)


@pytest.mark.parametrize("act", ["relu", "relu6", "clip", "leaky_relu", "prelu", "sigmoid", "tanh",
                                 "hard_sigmoid", "hard_swish", "elu"])
def test_conv_epilogue_with_residual(act: str) -> None:
    g = _conv_net(act)
    exe = check(g)
    assert exe.fallbacks == {}


def test_grouped_dilated_and_strided_convs() -> None:
    b = NetBuilder("shapes", (1, 12, 17, 19), seed=1)
    x = b.conv(b.x, 24, 3, stride=2, pad=[1, 0, 2, 1], group=3, name="grouped")  # asymmetric pads
    x = b.conv(x, 24, 3, pad=2, dilation=2, group=24, name="dw_dilated")
    x = b.conv(x, 20, (1, 3), pad=[0, 1, 0, 1], name="wide")  # K not a multiple of 16
    x = b.pool(x, "avg", 3, 2, pad=1)
    check(b.finish(x))


def test_pooling_ceil_mode_and_count_modes() -> None:
    b = NetBuilder("pools", (1, 16, 14, 14), seed=2)
    g = b.g
    a = g.op("avg_pool", b.x, name="avg_incl", kernel=[3, 3], stride=[2, 2], pad=[1, 1, 1, 1], ceil_mode=True,
             count_include_pad=True)
    m = g.op("max_pool", b.x, name="max_ceil", kernel=[3, 3], stride=[2, 2], ceil_mode=True)
    c = g.op("concat", a, g.op("avg_pool", b.x, name="avg_excl", kernel=[3, 3], stride=[2, 2], pad=[1, 1, 1, 1],
                               ceil_mode=True), name="cat", axis=1)
    gm = g.op("global_max_pool", m, name="gmax")
    exe = check(_finish(b, [c, gm]))
    assert exe.fallbacks == {}


def _finish(b: NetBuilder, outs: list) -> Graph:
    b.g.set_outputs(outs)
    b.g.verify()
    return b.g


def test_unsupported_op_falls_back_and_is_recorded() -> None:
    b = NetBuilder("lrn", (1, 8, 9, 9), seed=4)
    x = b.conv(b.x, 16, 3, pad=1, name="c1")
    x = b.g.op("lrn", x, name="norm", size=3, alpha=1e-4, beta=0.75, region="within")  # no TVM kernel
    x = b.g.op("lrn", b.conv(x, 16, 1, name="c2"), name="norm_across", size=5, alpha=1e-3, beta=0.75)
    exe = check(b.finish(x))
    assert set(exe.fallbacks) == {"norm"}
    assert "across" in exe.fallbacks["norm"]


def test_bad_input_is_an_lpdc_error() -> None:
    g = zoo.build("lenet")
    exe = lpdc.compile(g, "x86")
    with pytest.raises(LpdcExecutionError):
        exe.run({g.inputs[0].name: np.zeros((1, 1, 5, 5), np.float32)})


def test_profile_reports_every_node() -> None:
    g = zoo.build("tiny_cnn")
    exe = lpdc.compile(g, "x86")
    x = {g.inputs[0].name: np.ones(g.inputs[0].type.shape, np.float32)}
    outs, timings = exe.profile(x, repeats=2)
    assert np.allclose(outs[g.outputs[0].name], exe.run(x)[g.outputs[0].name])
    assert {t.op for t in timings} >= {"conv", "fully_connected"}
    assert all(t.primitive == "tvm" for t in timings)


def test_conv_knobs_override_and_validation() -> None:
    from lpdc.backends.tvm import compile_tvm
    from lpdc.backends.tvm.schedules.x86_conv import ConvKnobs
    from lpdc.errors import LpdcError

    b = NetBuilder("knobs", (1, 16, 10, 10), seed=5)
    g = b.finish(b.conv(b.x, 40, 3, pad=1, name="c"))
    x = {"data": np.random.default_rng(1).standard_normal((1, 16, 10, 10)).astype(np.float32)}
    ref = lpdc.compile(g, "numpy").run(x)[g.outputs[0].name]
    for kn in (ConvKnobs(16, 32, 3, 64, 12), ConvKnobs(8, 8, 10, 40, 10, unroll_kw=False)):
        got = compile_tvm(g, "x86", knobs={"c": kn}).run(x)[g.outputs[0].name]
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4 * float(np.abs(ref).max()))
    with pytest.raises(LpdcError, match="invalid conv knobs"):
        compile_tvm(g, "x86", knobs={"c": ConvKnobs(16, 32, 3, 32, 12)})  # Kp 32 < K 40


def test_unoptimised_graph_batch_norm_and_dropout_lowered() -> None:
    g = zoo.build("tiny_cnn")
    x = {g.inputs[0].name: np.random.default_rng(2).standard_normal(g.inputs[0].type.shape).astype(np.float32)}
    ref = lpdc.compile(g, "numpy", opt_level=0).run(x)
    exe = lpdc.compile(g, "x86", opt_level=0)
    assert any(n.op == "batch_norm" for n in exe.graph.nodes)  # O0 keeps it: the TVM kernel runs it
    assert exe.fallbacks == {}
    for k, r in ref.items():
        np.testing.assert_allclose(exe.run(x)[k], r, rtol=0, atol=1e-4 * float(np.abs(r).max()))


@pytest.mark.parametrize("seed", [390, 810])
def test_shapes_the_templates_do_not_fit_degrade_to_the_generic_schedule(seed):
    """Regression (found by differential testing): a 1-channel stride-2 depthwise conv and an FC
    with K=1 made the x86 templates raise ScheduleError; they now build with the generic schedule."""
    from lpdc.backends.numpy import compile_numpy
    from lpdc.tools.random_cnn import random_cnn

    g = random_cnn(seed)
    x = {v.name: np.random.default_rng(seed).standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    want = compile_numpy(g).run(x)
    got = lpdc.compile(g, target="x86").run(x)
    for k, ref in want.items():
        np.testing.assert_allclose(got[k], ref, rtol=0, atol=1e-4 * max(float(np.abs(ref).max()), 1e-6))
