"""Every plan computes what the reference computes: zoo models at opt_level=3 (PBQP over modelled
and measured costs), greedy plans and forced single-primitive plans (one conv primitive wherever
it applies), and synthetic graphs whose cost tables force every layout (NHWC, NCHW8c) through
convolutions, pooling, batch-norm, element-wise ops, concat and global pooling.

Tolerance: max abs error <= 1e-4 * max |reference| (1e-3 for plans that contain Winograd F(4x4)
or FFT layers, whose rounding is larger; see test_primitives.py).
"""

from __future__ import annotations

import lpdc
import numpy as np
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.ir import Graph, TensorType
from lpdc.passes.manager import PassManager, pipeline
from lpdc.passes.select.choices import primitive_choices
from lpdc.passes.select.select_primitives import select, select_config
from lpdc.tools.builder import NetBuilder
from lpdc.tools.zoo import MODELS

SMALL_MODELS = ["tiny_cnn", "lenet", "squeezenet1_1", "mobilenet_v1"]
LOOSE = ("winograd_4x4", "fft")


@pytest.fixture(autouse=True)
def _private_cost_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LPDC_COST_CACHE", str(tmp_path / "costs.json"))


def _inputs(g: Graph) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}


def _assert_same(got: dict, want: dict, loose: bool) -> None:
    assert got.keys() == want.keys()
    for k, ref in want.items():
        tol = (1e-3 if loose else 1e-4) * float(np.abs(ref).max()) + 1e-6
        err = float(np.abs(got[k] - ref).max())
        assert err <= tol, f"output {k}: max abs error {err:.3g} > {tol:.3g}"


def _primitives_used(g: Graph) -> set[str]:
    return {n.attrs["primitive"] for n in g.nodes if n.op in ("conv", "fully_connected")}


def _zoo(name: str) -> Graph:
    if name not in MODELS:
        pytest.skip(f"zoo model {name} is not in lpdc.tools.zoo.MODELS in this build")
    return lpdc.load(f"zoo:{name}")


@pytest.fixture(scope="module")
def references() -> dict[str, tuple[Graph, Graph, dict, dict]]:
    """name -> (graph, its O2 form, inputs, O0 reference outputs), built once."""
    out = {}
    for name in SMALL_MODELS:
        if name in MODELS:
            g = lpdc.load(f"zoo:{name}")
            feed = _inputs(g)
            out[name] = (g, PassManager(pipeline(2)).run(g.copy()), feed, lpdc.compile(g, opt_level=0).run(feed))
    return out


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_opt_level_3_plan_matches_reference(name: str, references) -> None:
    if name not in references:
        pytest.skip(f"zoo model {name} is not in this build")
    g, _, feed, want = references[name]
    plans = []
    with select_config(costs="model", on_plan=plans.append):
        exe = lpdc.compile(g, opt_level=3)
    assert len(plans) == 1 and plans[0].optimal
    assert all(n.attrs["primitive"] for n in exe.graph.nodes if n.op in ("conv", "fully_connected"))
    _assert_same(exe.run(feed), want, loose=bool(_primitives_used(exe.graph) & set(LOOSE)))


def test_measured_plan_matches_reference(references, tmp_path) -> None:
    g, _, feed, want = references["tiny_cnn"]
    plans = []
    with select_config(costs="measure", cache_path=tmp_path / "c.json", on_plan=plans.append, budget_s=0.005):
        exe = lpdc.compile(g, opt_level=3)
    assert plans[0].origins.get("measured", 0) > 0
    _assert_same(exe.run(feed), want, loose=bool(_primitives_used(exe.graph) & set(LOOSE)))


@pytest.mark.parametrize("name", ["tiny_cnn", "lenet", "squeezenet1_1", "mobilenet_v1"])
def test_forced_single_primitive_plans_match_reference(name: str, references) -> None:
    if name not in references:
        pytest.skip(f"zoo model {name} is not in this build")
    _, o2, feed, want = references[name]
    offered = set()
    for node in o2.nodes:
        if node.op == "conv":
            offered |= {c.primitive for c, _ in primitive_choices(node, o2)}
    skip_slow = {"kn2row", "kn2col", "direct"} if name != "tiny_cnn" else set()  # whole-net runs of seconds
    plans = sorted(offered - skip_slow) + ["greedy"]
    assert len(plans) >= 4
    for prim in plans:
        options = {"strategy": "greedy"} if prim == "greedy" else {"only": frozenset({prim})}
        with select_config(costs="model", **options) as config:
            graph, plan = select(o2.copy(), config)
        used = _primitives_used(graph)
        if prim != "greedy":
            assert used <= {prim, "im2col", "gemm", "gemv", "spmv"} and prim in used
        _assert_same(compile_numpy(graph).run(feed), want, loose=bool(used & set(LOOSE)))


class TableSource:
    """A cost source pricing by choice label alone; conversions by "SRC->DST"."""

    def __init__(self, table: dict[str, float], default: float = 1.0) -> None:
        self.table, self.default = table, default

    def lookup(self, signature: str, choice: str) -> float | None:
        return self.table.get(choice, self.default)


def _glue_net() -> Graph:
    """conv -> max_pool -> batch_norm -> (conv | conv+residual add) -> concat -> relu -> gap -> fc."""
    b = NetBuilder("glue", (1, 8, 12, 12), seed=3)
    x = b.conv(b.x, 16, 3, pad=1, name="c1")
    x = b.pool(x, "max", 2, 2, name="p1")
    x = b.bn(x, name="bn1")
    left = b.conv(x, 16, 3, pad=1, name="c2")
    right = b.g.op("add", b.conv(x, 16, 1, name="c3"), x, name="add1")
    x = b.g.op("concat", left, right, name="cat", axis=1)
    x = b.g.op("relu", x, name="r1")
    x = b.g.op("global_avg_pool", x, name="gap")
    x = b.fc(b.g.op("flatten", x, name="flat"), 10, name="fc")
    return b.finish(x)


@pytest.mark.parametrize("layout, table", [
    ("NHWC", {"im2row@NHWC": 1e-4, "gemm1x1_nhwc@NHWC": 1e-4, "-@NHWC": 1e-5, "NCHW->NHWC": 1e-6,
              "NHWC->NCHW": 1e-6}),
    ("NCHW8c", {"im2row_8c@NCHW8c": 1e-4, "-@NCHW8c": 1e-5, "NCHW->NCHW8c": 1e-6, "NCHW8c->NCHW": 1e-6}),
])
def test_forced_layouts_run_correctly(layout: str, table: dict[str, float]) -> None:
    g = _glue_net()
    feed = _inputs(g)
    want = lpdc.compile(g, opt_level=0).run(feed)
    with select_config(costs="cache", source=TableSource(table)) as config:
        graph, plan = select(g.copy(), config)
    graph.verify()
    layouts = {n.name: n.outputs[0].type.effective_layout for n in graph.nodes}
    assert layouts["c2"] == layouts["add1"] == layouts["cat"] == layouts["r1"] == layout
    if layout == "NHWC":  # pooling, batch-norm and global pooling follow; concat joins on the last axis
        assert layouts["p1"] == layouts["bn1"] == layouts["gap"] == "NHWC"
        assert next(n for n in graph.nodes if n.name == "cat").attrs["axis"] == 3
    else:  # the blocked layout is refused by ops whose inference does not know it
        assert layouts["p1"] == layouts["bn1"] == layouts["gap"] == "NCHW"
    assert layouts["fc"] is None and plan.conversions
    _assert_same(compile_numpy(graph).run(feed), want, loose=False)


def test_graph_outputs_stay_nchw_and_inputs_are_converted() -> None:
    g = Graph("chain")
    x = g.add_input("x", TensorType((1, 4, 6, 6)))
    rng = np.random.default_rng(0)
    w = g.add_const(rng.standard_normal((4, 4, 3, 3)).astype(np.float32), "w")
    y = g.op("conv", x, w, pad=[1, 1, 1, 1], name="c")
    g.set_outputs([g.op("relu", y, name="out")])
    feed = _inputs(g)
    want = compile_numpy(g.copy()).run(feed)
    table = {"im2row@NHWC": 1e-4, "-@NHWC": 1e-6, "-@NCHW": 1e-3, "NCHW->NHWC": 1e-6, "NHWC->NCHW": 1e-6}
    with select_config(costs="cache", source=TableSource(table)) as config:
        graph, plan = select(g, config)
    assert [(c.src, c.dst) for c in plan.conversions] == [("NCHW", "NHWC"), ("NHWC", "NCHW")]
    assert graph.inputs[0].type.layout is None and graph.outputs[0].type.layout is None
    assert graph.outputs[0].name == "out"
    _assert_same(compile_numpy(graph).run(feed), want, loose=False)
