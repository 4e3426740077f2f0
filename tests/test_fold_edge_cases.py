"""Folding and fusion edge cases: degenerate batch norms, grouped convs, values with several
users, graph outputs, pads that must not fold, and the PassManager's failure reporting."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from lpdc.errors import LpdcPassError
from lpdc.ir import Graph, TensorType, parse
from lpdc.passes.instruments import NumericCheck
from lpdc.passes.manager import PASSES, PassError, PassManager, get_pass, register_pass
from passes_util import assert_same_outputs, names_of, op_counts


def run(graph: Graph, *passes: str) -> Graph:
    """The passes on a copy, checked numerically after each one."""
    names = [n for p in passes for n in names_of(p)]
    return PassManager(names, instruments=[NumericCheck(seed=5)]).run(graph.copy())


def conv_bn(var: list[float], eps: float, group: int = 1, cin: int = 4, cout: int = 4) -> Graph:
    """x -> conv(group) -> batch_norm(var, eps) -> output, random weights."""
    rng = np.random.default_rng(0)
    g = Graph("convbn")
    x = g.add_input("x", TensorType((1, cin, 5, 5)))
    w = g.add_const(rng.standard_normal((cout, cin // group, 3, 3)).astype(np.float32), "w")
    b = g.add_const(rng.standard_normal(cout).astype(np.float32), "b")
    c = g.op("conv", x, w, b, name="c", pad=[1, 1, 1, 1], group=group)
    params = [g.add_const(a.astype(np.float32), n) for a, n in (
        (1 + rng.random(cout), "s"), (rng.standard_normal(cout), "beta"), (rng.standard_normal(cout), "mean"),
        (np.asarray(var, np.float32), "var"))]
    g.set_outputs([g.op("batch_norm", c, *params, name="y", eps=eps)])
    return g


@pytest.mark.parametrize("var", [[0.0] * 4, [1e-12, 1e-9, 0.0, 2.0]])
def test_bn_with_zero_or_tiny_variance_folds(var: list[float]) -> None:
    g = conv_bn(var, eps=1e-5)
    out = run(g, "fold-bn")  # NumericCheck: same outputs within 1e-4 * max|y|
    assert op_counts(out) == {"conv": 1}
    assert [v.name for v in out.outputs] == ["y"]


def test_bn_with_zero_variance_and_zero_eps_is_left_alone() -> None:
    """s / sqrt(0 + 0) is infinite: folding would write inf weights, so the BN stays."""
    g = conv_bn([0.0, 1.0, 1.0, 1.0], eps=0.0)
    out = PassManager(["fold-bn"]).run(g.copy())
    assert op_counts(out) == {"conv": 1, "batch_norm": 1}
    assert all(np.isfinite(a).all() for a in out.params.values())


@pytest.mark.parametrize(("group", "cin", "cout"), [(2, 4, 6), (4, 4, 4), (4, 4, 8)])
def test_bn_after_grouped_and_depthwise_conv(group: int, cin: int, cout: int) -> None:
    g = conv_bn([0.5] * cout, eps=1e-3, group=group, cin=cin, cout=cout)
    out = run(g, "fold-bn")
    assert op_counts(out) == {"conv": 1}
    conv = next(n for n in out.nodes if n.op == "conv")
    assert conv.attrs["group"] == group and conv.name == "c"


CONV_TWO_USERS = """
graph @g(%x: f32[1,2,4,4]) -> (%y, %z) {
  %w = const dense<[1.0, -2.0, 3.0, 0.5]> : f32[2,2,1,1]
  %c = conv(%x, %w) : f32[1,2,4,4]
  %s = const dense<[2.0, 3.0]> : f32[2]
  %b = const dense<[0.5, -1.0]> : f32[2]
  %m = const dense<[0.1, 0.2]> : f32[2]
  %v = const dense<[1.0, 4.0]> : f32[2]
  %y = batch_norm(%c, %s, %b, %m, %v) : f32[1,2,4,4]
  %z = relu(%c) : f32[1,2,4,4]
  return %y, %z
}"""


def test_conv_feeding_bn_and_another_consumer_is_not_folded() -> None:
    g = parse(CONV_TWO_USERS)
    out = run(g, "O2")
    assert op_counts(out) == {"conv": 1, "batch_norm": 1, "relu": 1}
    conv = next(n for n in out.nodes if n.op == "conv")
    assert conv.attrs["activation"] == "none" and out.const_data(conv.inputs[1]).tolist() == \
        g.const_data(g.value("w")).tolist()


def test_conv_output_that_is_a_graph_output_is_not_folded() -> None:
    g = parse(CONV_TWO_USERS.replace("-> (%y, %z)", "-> (%y, %c)").replace("return %y, %z", "return %y, %c"))
    out = run(g, "O2")
    assert op_counts(out) == {"conv": 1, "batch_norm": 1}
    assert [v.name for v in out.outputs] == ["y", "c"]


def test_activation_on_a_value_with_several_users_is_not_fused() -> None:
    g = parse(CONV_TWO_USERS.replace("batch_norm(%c, %s, %b, %m, %v)", "sigmoid(%c)"))
    out = run(g, "fuse-activation", "dce")
    assert op_counts(out) == {"conv": 1, "sigmoid": 1, "relu": 1}
    assert all(n.attrs.get("activation", "none") == "none" for n in out.nodes)


def test_fused_activation_keeps_the_output_name_and_layer_name() -> None:
    g = parse(CONV_TWO_USERS.replace("-> (%y, %z)", "-> (%z)").replace("return %y, %z", "return %z"))
    out = run(g, "O2")
    assert op_counts(out) == {"conv": 1}
    (conv,) = [n for n in out.nodes if n.op == "conv"]
    assert conv.output.name == "z" and conv.name == "c" and conv.attrs["activation"] == "relu"


def test_bn_after_conv_with_activation_is_not_folded() -> None:
    g = parse(CONV_TWO_USERS.replace("%c = conv(%x, %w)", '%c = conv(%x, %w) {activation="relu"}')
              .replace("-> (%y, %z)", "-> (%y)").replace("return %y, %z", "return %y"))
    out = run(g, "fold-bn", "dce")
    assert op_counts(out) == {"conv": 1, "batch_norm": 1}


def test_mul_that_varies_spatially_is_not_folded() -> None:
    g = parse("""
graph @g(%x: f32[1,1,2,2]) -> (%y) {
  %w = const dense<[2.0]> : f32[1,1,1,1]
  %c = conv(%x, %w) : f32[1,1,2,2]
  %k = const dense<[1.0, 2.0, 3.0, 4.0]> : f32[1,1,2,2]
  %y = mul(%c, %k) : f32[1,1,2,2]
  return %y
}""")
    assert op_counts(run(g, "fold-bn")) == {"conv": 1, "mul": 1}


def test_shared_weights_fold_into_one_conv_only() -> None:
    """Two convs reading one weight constant: folding into one must not change the other."""
    g = parse("""
graph @g(%x: f32[1,2,3,3]) -> (%y, %z) {
  %w = const dense<[1.0, 2.0, 3.0, 4.0]> : f32[2,2,1,1]
  %c = conv(%x, %w) : f32[1,2,3,3]
  %k = const dense<[2.0, -1.0]> : f32[2,1,1]
  %y = mul(%c, %k) : f32[1,2,3,3]
  %z = conv(%x, %w) {pad=[1,1,1,1]} : f32[1,2,5,5]
  return %y, %z
}""")
    out = run(g, "fold-bn")
    assert op_counts(out) == {"conv": 2}
    assert g.const_data(g.value("w")).ravel().tolist() == [1.0, 2.0, 3.0, 4.0]  # input graph untouched


def test_residual_is_not_fused_into_a_conv_with_an_activation() -> None:
    g = parse("""
graph @g(%x: f32[1,2,3,3]) -> (%y) {
  %w = const dense<[1.0, 2.0]> : f32[2,1,1,1]
  %c = conv(%x, %w) {group=2, activation="relu"} : f32[1,2,3,3]
  %y = add(%c, %x) : f32[1,2,3,3]
  return %y
}""")
    assert op_counts(run(g, "fuse-residual")) == {"conv": 1, "add": 1}


def test_residual_fuses_when_the_skip_branch_is_computed_later() -> None:
    """add(conv_a(x), conv_b(x)): one conv takes the other's output; order is restored."""
    g = parse("""
graph @g(%x: f32[1,4,3,3]) -> (%y) {
  %wa = const dense<[1.0, 2.0, 3.0, 4.0]> : f32[4,1,1,1]
  %a = conv(%x, %wa) {group=4, pad=[1,1,1,1]} : f32[1,4,5,5]
  %wb = const dense<[0.5, -1.0, 2.0, 1.5]> : f32[4,1,1,1]
  %b = conv(%x, %wb) {group=4, pad=[1,1,1,1], dilation=[2,2]} : f32[1,4,5,5]
  %s = add(%a, %b) : f32[1,4,5,5]
  %y = relu(%s) : f32[1,4,5,5]
  return %y
}""")
    out = run(g, "fuse-residual", "fuse-activation")
    assert op_counts(out) == {"conv": 2}
    host = next(n for n in out.nodes if n.op == "conv" and len(n.inputs) > 3)
    assert host.output.name == "y" and host.attrs["activation"] == "relu"


PAD_POOL = """
graph @g(%x: f32[1,1,4,4]) -> (%y) {
  %r = relu(%x) : f32[1,1,4,4]
  %p = pad(%r) {pads=[0,0,1,1,0,0,1,1]} : f32[1,1,6,6]
  %y = POOL : f32[1,1,OUT,OUT]
  return %y
}"""


@pytest.mark.parametrize(("source", "pool", "out", "folds"), [
    ("%r", "max_pool(%p) {kernel=[2,2], stride=[2,2]}", 3, True),  # zero pad, input >= 0: 0 never wins
    ("%x", "max_pool(%p) {kernel=[2,2], stride=[2,2]}", 3, False),  # input may be < 0: 0 could win
    ("%r", "max_pool(%p) {kernel=[3,3], stride=[2,2], dilation=[2,2]}", 1, False),  # dilation 2
    ("%x", "avg_pool(%p) {kernel=[3,3]}", 4, True),  # no own pad: count the zeros as input
    ("%x", "avg_pool(%p) {kernel=[3,3], pad=[1,1,1,1], stride=[2,2]}", 3, False),  # divisors would differ
    ("%x", "avg_pool(%p) {kernel=[3,3], pad=[1,1,1,1], stride=[2,2], count_include_pad=true}", 3, True),
    ("%r", "max_pool(%p) {kernel=[2,2], stride=[2,2], ceil_mode=true}", 3, True),
])
def test_pad_folds_into_pools_only_when_valid(source: str, pool: str, out: int, folds: bool) -> None:
    g = parse(PAD_POOL.replace("pad(%r)", f"pad({source})").replace("POOL", pool).replace("OUT", str(out)))
    result = run(g, "fold-pad", "dce")
    assert ("pad" not in op_counts(result)) == folds


def test_reflect_pad_and_nonzero_pad_do_not_fold_into_conv() -> None:
    for attrs in ('mode="reflect"', "value=1.0"):
        g = parse(f"""
graph @g(%x: f32[1,1,4,4]) -> (%y) {{
  %p = pad(%x) {{pads=[0,0,1,1,0,0,1,1], {attrs}}} : f32[1,1,6,6]
  %w = const dense<[1.0, 1.0, 1.0, 1.0]> : f32[1,1,2,2]
  %y = conv(%p, %w) : f32[1,1,5,5]
  return %y
}}""")
        assert op_counts(run(g, "fold-pad")) == {"pad": 1, "conv": 1}


def test_identity_between_graph_input_and_output_stays() -> None:
    """Removing it would rename the graph output to the input's name."""
    g = parse("""
graph @g(%x: f32[2]) -> (%y) {
  %y = identity(%x) : f32[2]
  return %y
}""")
    out = run(g, "canonicalize")
    assert [v.name for v in out.outputs] == ["y"] and [v.name for v in out.inputs] == ["x"]


# ---- the PassManager reports failures by pass ---------------------------------------------------
def _scale_first_conv(graph: Graph) -> Graph:
    """A wrong 'optimisation': multiplies the first conv's weights by 1.1."""
    conv = next(n for n in graph.nodes if n.op == "conv")
    w = conv.inputs[1]
    graph.params[w.producer.attrs["param"]] = graph.const_data(w) * np.float32(1.1)
    return graph


def _crash(graph: Graph) -> Graph:
    return {}["missing"]


@pytest.fixture
def broken_passes() -> Iterator[None]:
    """Two deliberately broken passes, registered only for the test using them."""
    get_pass("dce")  # load the real passes first
    register_pass("test-scale-output")(_scale_first_conv)
    register_pass("test-crash")(_crash)
    yield
    PASSES.pop("test-scale-output")
    PASSES.pop("test-crash")


def test_numeric_check_names_the_pass_that_changed_outputs(broken_passes: None) -> None:
    g = conv_bn([1.0] * 4, eps=1e-5)
    with pytest.raises(PassError, match="numeric check") as err:
        PassManager(["fold-bn", "test-scale-output", "dce"], instruments=[NumericCheck()]).run(g.copy())
    assert err.value.pass_name == "test-scale-output" and err.value.earlier == ("fold-bn",)
    assert "pass 'test-scale-output'" in str(err.value)
    assert_same_outputs(g, PassManager(["fold-bn"]).run(g.copy()))  # fold-bn alone is fine


def test_a_crashing_pass_is_reported_as_a_pass_error(broken_passes: None) -> None:
    with pytest.raises(LpdcPassError, match=r"pass 'test-crash'.*after fold-bn.*KeyError") as err:
        PassManager(["fold-bn", "test-crash"]).run(conv_bn([1.0] * 4, 1e-5))
    assert isinstance(err.value, PassError) and err.value.earlier == ("fold-bn",)


def test_unknown_pass_suggests_a_name() -> None:
    with pytest.raises(LpdcPassError, match="did you mean fold-bn"):
        PassManager(["fold-bm"]).run(conv_bn([1.0] * 4, 1e-5))
