"""select-primitives: choices per node, the PBQP it builds, the conversion trade-off it solves,
the cost cache, measured costs, solve time on the largest zoo graphs, --explain, and O3."""

from __future__ import annotations

import json
import time

import lpdc
import numpy as np
import pytest
from lpdc.backends.target import DEVICES
from lpdc.errors import LpdcPassError
from lpdc.ir import Graph, TensorType
from lpdc.passes.manager import PassManager, pipeline
from lpdc.passes.select.build import build_problem
from lpdc.passes.select.choices import node_choices
from lpdc.passes.select.costs import CostCache, layer_signature
from lpdc.passes.select.pbqp import evaluate, solve
from lpdc.passes.select.pricing import Pricer
from lpdc.passes.select.select_primitives import SelectConfig, make_pricer, select, select_config
from lpdc.tools.cli import main
from lpdc.tools.zoo import MODELS


@pytest.fixture(autouse=True)
def _private_cost_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LPDC_COST_CACHE", str(tmp_path / "costs.json"))


class TableSource:
    """A cost source pricing by choice label alone; conversions by "SRC->DST"."""

    def __init__(self, table: dict[str, float], default: float = 1.0) -> None:
        self.table, self.default = table, default

    def lookup(self, signature: str, choice: str) -> float | None:
        return self.table.get(choice, self.default)


def _chain(channels: int = 8) -> Graph:
    """x -> conv3x3 -> conv1x1 -> conv3x3 -> relu (graph output)."""
    rng = np.random.default_rng(0)
    g = Graph("chain")
    x = g.add_input("x", TensorType((1, channels, 10, 10)))
    for i, k in enumerate((3, 1, 3)):
        w = g.add_const(rng.standard_normal((channels, channels, k, k)).astype(np.float32), f"w{i}")
        x = g.op("conv", x, w, pad=[k // 2] * 4, name=f"conv{i}")
    g.set_outputs([g.op("relu", x, name="out")])
    return g


def _labels(g: Graph, name: str) -> list[str]:
    node = next(n for n in g.nodes if n.name == name)
    return [c.label for c in node_choices(node, g)]


def test_choices_per_node() -> None:
    g = _chain()
    conv = _labels(g, "conv0")
    assert {"im2col@NCHW", "im2row@NHWC", "winograd_4x4@NCHW", "im2row_8c@NCHW8c", "kn2col@NHWC"} <= set(conv)
    assert "gemm1x1@NCHW" not in conv and "gemm1x1@NCHW" in _labels(g, "conv1")
    assert set(_labels(g, "out")) == {"-@NCHW", "-@NHWC", "-@NCHW8c"}
    out = next(n for n in g.nodes if n.name == "out")
    assert [c.label for c in node_choices(out, g, pin_default=True)] == ["-@NCHW"]
    # a broadcast operand ties an element-wise op to NCHW; so does an op without layout support
    b = g.add_const(np.ones((1, 8, 1, 1), np.float32), "bias")
    g.op("add", g.value("conv2"), b, name="badd")
    g.op("softmax", g.value("conv2"), name="sm", axis=1)
    assert _labels(g, "badd") == _labels(g, "sm") == ["-@NCHW"]
    # only restricts primitives; a layer none of them fits falls back to the reference
    node = next(n for n in g.nodes if n.name == "conv0")
    assert [c.label for c in node_choices(node, g, only={"gemm1x1"})] == ["im2col@NCHW"]
    assert [c.label for c in node_choices(node, g, only={"fft", "im2row"})] == ["im2row@NHWC", "fft@NCHW"]


def test_conversions_trade_off_against_primitive_gains() -> None:
    cheap_nhwc = {"im2row@NHWC": 1e-4, "gemm1x1_nhwc@NHWC": 5e-5, "im2col@NCHW": 5e-4, "gemm1x1@NCHW": 5e-4,
                  "-@NCHW": 1e-6, "-@NHWC": 1e-6, "NCHW->NHWC": 1e-5, "NHWC->NCHW": 1e-5}
    with select_config(costs="cache", source=TableSource(cheap_nhwc)) as config:
        g, plan = select(_chain(), config)
    assert plan.choices == {"conv0": "im2row@NHWC", "conv1": "gemm1x1_nhwc@NHWC", "conv2": "im2row@NHWC",
                            "out": "-@NCHW"}
    assert [(c.value, c.dst) for c in plan.conversions] == [("x", "NHWC"), ("conv2", "NCHW")]
    assert plan.optimal and plan.cost == pytest.approx(2.5e-4 + 1e-6 + 2e-5)
    # the same gains no longer pay for the conversions once they cost more than the saving
    dear = {**cheap_nhwc, "NCHW->NHWC": 1e-3, "NHWC->NCHW": 1e-3}
    with select_config(costs="cache", source=TableSource(dear)) as config:
        g, plan = select(_chain(), config)
    assert set(plan.choices.values()) <= {"im2col@NCHW", "gemm1x1@NCHW", "-@NCHW"} and not plan.conversions
    assert not any(n.op == "layout_convert" for n in g.nodes)
    # the runner-up of each layer is reported with its local cost
    conv0 = next(layer for layer in plan.layers if layer.name == "conv0")
    assert conv0.runner_up and conv0.runner_up_cost >= conv0.cost


def test_pbqp_plan_is_never_worse_than_greedy_or_single_primitive_plans() -> None:
    g = PassManager(pipeline(2)).run(lpdc.load("zoo:tiny_cnn"))
    pricer = make_pricer(SelectConfig(costs="model"))
    full = build_problem(g.copy(), pricer)
    best = solve(full.problem)
    with select_config(costs="model", strategy="greedy") as config:
        _, greedy = select(g.copy(), config)
    assert best.cost <= greedy.cost + 1e-12
    for prim in ("im2row", "winograd_2x2", "kn2row", "direct"):
        restricted = build_problem(g.copy(), pricer, only={prim})
        assert best.cost <= solve(restricted.problem).cost + 1e-12
    assert best.cost == pytest.approx(evaluate(full.problem, best.choice))


def test_cost_cache_round_trip_and_bad_files(tmp_path, caplog) -> None:
    path = tmp_path / "sub" / "costs.json"
    cache = CostCache(path, "numpy/blas1")
    assert cache.lookup("conv sig", "im2col@NCHW") is None
    cache.store("conv sig", "im2col@NCHW", 1.5e-3)
    cache.save()
    again = CostCache(path, "numpy/blas1")
    assert again.lookup("conv sig", "im2col@NCHW") == 1.5e-3 and len(again) == 1
    assert CostCache(path, "a72").lookup("conv sig", "im2col@NCHW") is None  # keyed by device
    other = CostCache(path, "numpy/blas1")  # a concurrent writer's entries survive a save
    other.store("fc sig", "gemm@-", 2e-5)
    again.store("pool sig", "-@NHWC", 3e-5)
    other.save()
    again.save()
    merged = json.loads(path.read_text())["entries"]
    assert set(merged) == {"numpy/blas1|conv sig|im2col@NCHW", "numpy/blas1|fc sig|gemm@-",
                           "numpy/blas1|pool sig|-@NHWC"}
    path.write_text("{not json")
    assert CostCache(path).lookup("conv sig", "im2col@NCHW") is None
    assert "ignoring unreadable cost cache" in caplog.text


def test_measured_costs_are_cached_and_reused(tmp_path) -> None:
    g = lpdc.load("zoo:tiny_cnn")
    cache = tmp_path / "measured.json"
    plans = []
    with select_config(costs="measure", cache_path=cache, on_plan=plans.append, budget_s=0.005):
        lpdc.compile(g, opt_level=3)
        t0 = time.perf_counter()
        lpdc.compile(g, opt_level=3)
        second = time.perf_counter() - t0
    first, again = plans
    assert first.origins.get("measured", 0) > 0 and "measured" not in again.origins
    assert again.origins["cached"] == first.origins["measured"]
    entries = json.loads(cache.read_text())["entries"]
    assert any("|conv " in k and k.endswith("|im2row@NHWC") for k in entries)
    assert all(v > 0 for v in entries.values())
    assert again.choices == first.choices and second < 5.0


def test_signatures_name_shapes_not_layouts() -> None:
    g = _chain()
    conv = next(n for n in g.nodes if n.name == "conv0")
    sig = layer_signature(conv, g)
    assert sig.startswith("conv af32[1,8,10,10] cf32[8,8,3,3]") and "density=1" in sig
    assert layer_signature(next(n for n in g.nodes if n.name == "conv2"), g) == sig  # same shape, same costs


@pytest.mark.parametrize("name", ["googlenet", "resnet50"])
def test_solve_time_of_the_largest_zoo_graphs(name: str) -> None:
    if name not in MODELS:
        pytest.skip(f"zoo model {name} is not in lpdc.tools.zoo.MODELS in this build")
    g = PassManager(pipeline(2)).run(lpdc.load(f"zoo:{name}"))
    sel = build_problem(g, Pricer(DEVICES["numpy"]))
    sizes = [len(c) for c in sel.problem.costs.values()]
    assert max(sizes) >= 8 and sum(s > 1 for s in sizes) >= 50
    solutions = [solve(sel.problem) for _ in range(3)]
    fastest = min(s.solve_seconds for s in solutions)
    print(f"{name}: {len(sizes)} PBQP nodes, {len(sel.problem.edges)} edges, {sum(sizes)} choices, "
          f"solved in {fastest * 1e3:.2f} ms, optimal={solutions[0].optimal}")
    assert fastest < 0.100
    assert solutions[0].optimal


def test_opt_level_3_runs_the_pass_and_is_idempotent() -> None:
    assert pipeline(3)[-1] == "select-primitives" and "select-primitives" not in pipeline(2)
    g = lpdc.load("zoo:tiny_cnn")
    with select_config(costs="model"):
        exe = lpdc.compile(g, opt_level=3)
        convs = [n for n in exe.graph.nodes if n.op == "conv"]
        assert convs and all(n.attrs["primitive"] for n in convs)
        planned = exe.graph.copy()
        before = str(planned)
        graph, plan = select(planned)
    assert plan is None and str(graph) == before


def test_bad_options_are_pass_errors() -> None:
    with select_config(costs="model", strategy="bogus"), pytest.raises(LpdcPassError, match="strategy"):
        lpdc.compile(lpdc.load("zoo:tiny_cnn"), opt_level=3)
    with select_config(costs="guess"), pytest.raises(LpdcPassError, match="cost mode"):
        lpdc.compile(lpdc.load("zoo:tiny_cnn"), opt_level=3)


def test_cli_compile_explain(capsys, monkeypatch) -> None:
    monkeypatch.setenv("LPDC_SELECT_COSTS", "model")
    assert main(["compile", "zoo:tiny_cnn", "--target", "numpy", "-O3", "--explain"]) == 0
    out = capsys.readouterr().out
    assert "select-primitives on @tiny_cnn" in out and "provably optimal" in out
    assert "runner-up" in out and "conv1" in out and "layout conversion(s) inserted" in out
    assert main(["compile", "zoo:tiny_cnn", "-O2", "--explain"]) == 0
    assert "no primitive selection ran" in capsys.readouterr().out


def test_analytical_model_ranks_primitives_per_device() -> None:
    from lpdc.passes.select.analytical import estimate_convert, estimate_node
    from lpdc.passes.select.choices import Choice

    rng = np.random.default_rng(0)
    g = Graph("m")
    x = g.add_input("x", TensorType((1, 64, 56, 56)))
    w3 = g.add_const(rng.standard_normal((64, 64, 3, 3)).astype(np.float32), "w3")
    w7 = g.add_const(rng.standard_normal((64, 64, 7, 7)).astype(np.float32), "w7")
    c3 = g.op("conv", x, w3, pad=[1, 1, 1, 1], name="c3").producer
    c7 = g.op("conv", x, w7, pad=[3, 3, 3, 3], stride=[2, 2], name="c7").producer
    def t(node, prim: str, dev: str) -> float:
        return estimate_node(node, g, Choice(prim, "NCHW"), DEVICES[dev])

    for dev in ("numpy", "a72", "mali"):
        assert t(c3, "winograd_4x4", dev) < t(c3, "im2col", dev) < t(c3, "direct", dev)  # fewer multiplications win
        assert t(c7, "im2col", dev) < t(c7, "kn2row", dev)  # kn2row computes every tap at full resolution
        d = DEVICES[dev]
        assert estimate_convert(x.type, "NCHW", "NHWC", d) > 0 == estimate_convert(x.type, "NHWC", "NHWC", d)
    # a slower device costs more; boards are priced by the model, never measured here
    assert t(c3, "im2col", "a72") > t(c3, "im2col", "numpy")
    pricer = make_pricer(SelectConfig(device="a72"))
    assert not pricer.measure and pricer.label == "a72 (cached)"


def test_pruned_weights_offer_sparse_primitives() -> None:
    g = _chain()
    w = g.params["w0"].copy()
    w[np.abs(w) < np.quantile(np.abs(w), 0.8)] = 0  # keep the largest 20%
    g.params["w0"] = w
    assert "sparse_csr@NCHW" in _labels(g, "conv0") and "sparse_csr@NCHW" not in _labels(g, "conv2")
    with select_config(costs="cache", source=TableSource({"sparse_csr@NCHW": 1e-6})) as config:
        graph, plan = select(g.copy(), config)
    assert plan.choices["conv0"] == "sparse_csr@NCHW"
    feed = {"x": np.random.default_rng(1).standard_normal((1, 8, 10, 10)).astype(np.float32)}
    want = lpdc.backends.numpy.compile_numpy(g).run(feed)["out"]
    got = lpdc.backends.numpy.compile_numpy(graph).run(feed)["out"]
    np.testing.assert_allclose(got, want, atol=1e-4 * float(np.abs(want).max()))
