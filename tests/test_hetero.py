"""CPU + GPU co-execution: plans, split layers, the executor and the board artifact.

Board targets (mali+a72) run here only as an emulation: the same plan and OpenCL sources, the
CPU side built for this host. Results are compared with the NumPy reference on the ORIGINAL
graph (before the pass pipeline and the split rewrite), logits included. Split correctness is
also checked without any executor: the rewritten graph through the reference interpreter.
"""

from __future__ import annotations

import functools
import itertools
import json
import platform
import shutil
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from lpdc.backends.opencl import runtime

if not runtime.available():
    pytest.skip("no working OpenCL device (install pocl-opencl-icd)", allow_module_level=True)

import lpdc  # noqa: E402
from backend_util import assert_matches, feeds_for, with_logits  # noqa: E402
from lpdc.backends.artifact import load_artifact  # noqa: E402
from lpdc.backends.hetero import compile_hetero  # noqa: E402
from lpdc.backends.hetero.artifact import load_hetero_artifact  # noqa: E402
from lpdc.backends.hetero.costs import LayerTimes  # noqa: E402
from lpdc.backends.hetero.plan import CHANNEL_BLOCK, HeteroPlan, LayerChoice, plan_devices  # noqa: E402
from lpdc.backends.hetero.split import apply_plan  # noqa: E402
from lpdc.backends.numpy import compile_numpy  # noqa: E402
from lpdc.backends.target import DEVICES  # noqa: E402
from lpdc.errors import LpdcExecutionError, LpdcTargetError  # noqa: E402
from lpdc.ir import Graph, TensorType  # noqa: E402
from lpdc.passes.manager import PassManager, pipeline  # noqa: E402
from lpdc.tools.zoo import MODELS, build  # noqa: E402

RTOL = 5e-5  # largest seen: 1.3e-5 x max|ref| (ssd_mobilenet's softmax)
SPLIT_RTOL = 1e-5  # split halves vs the whole layer, both through the reference


def zoo_case(name: str, target: str) -> tuple[Graph, dict, dict, object]:
    """(original graph with logits, inputs, reference outputs, executable for `target`)."""
    g = with_logits(build(name))
    feeds = feeds_for(g)
    return g, feeds, compile_numpy(g).run(feeds), lpdc.compile(g, target=target)


# Models reused by several tests (the others are not kept: vgg16 alone holds 0.5 GB of weights).
cached_case = functools.cache(zoo_case)
CACHED = ("resnet18", "squeezenet1_1")


def optimised(name: str) -> Graph:
    """The graph `cached_case` compiles, after the pass pipeline (names as in its plan)."""
    g = with_logits(build(name))
    PassManager(pipeline(2)).run(g)
    return g


def non_const(g: Graph) -> list:
    return [n for n in g.nodes if n.op != "const"]


# ---- every zoo model, emulated mali+a72 ----------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_emulated_mali_a72_matches_reference(name: str) -> None:
    g, feeds, ref, exe = (cached_case if name in CACHED else zoo_case)(name, "mali+a72")
    assert exe.plan.cpu == "a72" and exe.plan.gpu == "mali" and exe.plan.cost_source == "model"
    assert_matches(exe.run(feeds, emulate=True), ref)
    with pytest.raises(LpdcTargetError, match="emulate=True"):
        exe.run(feeds)


def test_emulated_mali_a72_a53() -> None:
    g, feeds, ref, exe = zoo_case("squeezenet1_1", "mali+a72+a53")
    assert exe.plan.cpu == "a72+a53" and exe.plan.gpu == "mali"
    used = {c.device for c in exe.plan.layers.values()}
    assert used == {"cpu", "gpu", "split"}, used  # both sides really take part
    assert_matches(exe.run(feeds, emulate=True), ref)
    with pytest.raises(LpdcTargetError):
        exe.run(feeds)


# ---- the plan of a real model --------------------------------------------------------------------
def check_split_choice(c: LayerChoice, g: Graph) -> None:
    """A split's CPU part is a proper, block-aligned (channels) or non-empty (rows) part."""
    node = next(n for n in g.nodes if n.name == c.node)
    if c.split_axis == "rows":
        assert node.op == "conv" and c.rows == node.output.type.shape[2], c
        assert 0 < c.cpu_rows < c.rows, c
        assert c.cpu_share == pytest.approx(c.cpu_rows / c.rows)
    else:
        assert c.channels == g.const_data(node.inputs[1]).shape[0], c
        assert c.cpu_channels % CHANNEL_BLOCK == 0 and 0 < c.cpu_channels < c.channels, c
        assert c.cpu_share == pytest.approx(c.cpu_channels / c.channels)
    assert c.t_chosen < min(c.t_cpu, c.t_gpu), c


def test_resnet18_plan_covers_graph_and_splits_convs() -> None:
    _, _, _, exe = cached_case("resnet18", "mali+a72")
    opt = optimised("resnet18")
    assert set(exe.plan.layers) == {n.name for n in non_const(opt)}
    splits = [c for c in exe.plan.layers.values() if c.device == "split"]
    assert any(c.op == "conv" for c in splits), exe.explain()
    for c in splits:
        check_split_choice(c, opt)
    for c in exe.plan.layers.values():
        assert c.device in ("cpu", "gpu", "split")
        assert c.cpu_share == {"cpu": 1.0, "gpu": 0.0}.get(c.device, c.cpu_share)
    text = exe.explain()
    for name in exe.plan.layers:
        assert name in text, name
    # the executable's graph is the split rewrite: halves and joins under the layer names
    names = {n.name for n in exe.graph.nodes}
    for c in splits:
        assert {f"{c.node}@cpu", f"{c.node}@gpu", f"{c.node}@join"} <= names


def test_resnet18_split_graph_equals_original_in_reference() -> None:
    _, _, _, exe = cached_case("resnet18", "mali+a72")
    opt = optimised("resnet18")
    sg = apply_plan(opt, exe.plan)
    sg.verify()
    assert all(n.attrs.get("device") in ("cpu", "gpu") for n in non_const(sg))
    assert any(n.name.endswith("@gpu") for n in sg.nodes)
    feeds = feeds_for(opt, 3)
    got, ref = compile_numpy(sg).run(feeds), compile_numpy(opt).run(feeds)
    assert_matches({"fc": got["fc"]}, {"fc": ref["fc"]}, SPLIT_RTOL)  # logits up to 556: tight
    assert_matches({"prob": got["prob"]}, {"prob": ref["prob"]}, RTOL)  # the softmax amplifies their error


# ---- split layers with every epilogue, by a hand-made plan -----------------------------------------
def residual_net() -> Graph:
    """conv+relu -> conv(+residual, relu) -> conv(prelu, stride 2) -> gap -> fc -> fc(+residual, relu).
    Width 13 is no channel count, so a per-channel vector that lost its shape cannot broadcast."""
    rng = np.random.default_rng(11)
    g = Graph("residual")
    x = g.add_input("x", TensorType((1, 8, 12, 13), "f32"))

    def const(shape: tuple[int, ...], name: str, scale: float = 1.0):
        return g.add_const((rng.standard_normal(shape) * scale).astype(np.float32), name)

    c1 = g.op("conv", x, const((16, 8, 3, 3), "w1", 0.15), const((16,), "b1", 0.1), name="c1", pad=[1, 1, 1, 1],
              activation="relu")
    c2 = g.op("conv", c1, const((16, 16, 3, 3), "w2", 0.1), const((16,), "b2", 0.1), c1, name="c2",
              pad=[1, 1, 1, 1], activation="relu")
    slope = g.add_const(np.linspace(0.05, 0.4, 24, dtype=np.float32).reshape(24, 1, 1), "slope")
    c3 = g.op("conv", c2, const((24, 16, 3, 3), "w3", 0.1), const((24,), "b3", 0.1), None, slope, name="c3",
              pad=[1, 0, 1, 2], stride=[2, 2], activation="prelu")
    gap = g.op("global_avg_pool", c3, name="gap")
    f1 = g.op("fully_connected", gap, const((32, 24), "wf1", 0.3), const((32,), "bf1", 0.1), name="fc1")
    f2 = g.op("fully_connected", f1, const((32, 32), "wf2", 0.2), const((32,), "bf2", 0.1), f1, name="fc2",
              activation="relu")
    g.set_outputs([c3, f2])
    g.verify()
    return g


def split_plan(g: Graph, axis: str) -> HeteroPlan:
    """Every conv and fc2 split (convs by `axis`), gap on the GPU, fc1 on the CPU."""
    plan = HeteroPlan("mali+a72", "a72", "mali")
    for n in non_const(g):
        k = g.const_data(n.inputs[1]).shape[0] if n.op in ("conv", "fully_connected") else 0
        if n.op == "conv" and axis == "rows":
            rows = n.output.type.shape[2]
            c = LayerChoice(n.name, n.op, "split", 0.0, 0, k, split_axis="rows", cpu_rows=rows // 2 - 1, rows=rows)
        elif n.op == "conv" or n.name == "fc2":
            c = LayerChoice(n.name, n.op, "split", 0.0, CHANNEL_BLOCK if k != 32 else 16, k)
        else:
            c = LayerChoice(n.name, n.op, "gpu" if n.op == "global_avg_pool" else "cpu", 0.0)
        plan.layers[n.name] = c
    return plan


@pytest.mark.parametrize("axis", ["channels", "rows"])
def test_split_residual_prelu_and_fc(axis: str) -> None:
    g = residual_net()
    plan = split_plan(g, axis)
    feeds = feeds_for(g, 5)
    ref = compile_numpy(g).run(feeds)
    assert (ref["c3"] < 0).any() and (ref["fc2"] == 0).any()  # prelu's slope and relu both matter

    sg = apply_plan(g, plan)
    sg.verify()
    assert all(n.attrs.get("device") in ("cpu", "gpu") for n in non_const(sg))
    by_name = {n.name: n for n in sg.nodes}
    for layer in ("c1", "c2", "c3", "fc2"):
        assert by_name[f"{layer}@cpu"].attrs["device"] == "cpu" and by_name[f"{layer}@gpu"].attrs["device"] == "gpu"
        assert layer not in by_name  # the whole layer is gone
    for layer in ("c2", "fc2"):  # the fused residual travels with each half
        assert all(by_name[f"{layer}@{d}"].inputs[3] is not None for d in ("cpu", "gpu"))
    assert by_name["c3@gpu"].attrs["activation"] == "prelu"
    assert_matches(compile_numpy(sg).run(feeds), ref, SPLIT_RTOL)  # split semantics, no executor involved

    exe = compile_hetero(g, "mali+a72", plan=plan)  # and the co-execution of the same plan
    on_gpu = {s.node.name for s in exe.gpu_plan.steps}
    assert {"c1@gpu", "c2@gpu", "c3@gpu", "fc2@gpu", "gap"} <= on_gpu, on_gpu
    assert not on_gpu & {"c1@cpu", "c2@cpu", "c3@cpu", "fc2@cpu", "fc1"}
    assert_matches(exe.run(feeds, emulate=True), ref)


def test_gpu_results_read_by_queued_kernels_live_until_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    """c1 (GPU) feeds c2's GPU half, queued at once, and its CPU half, c1's last use. The CPU half
    must not free c1's memory while the GPU half may still read it (a use-after-free that gave
    wrong alexnet/vgg16 results when PoCL compiled kernels late, with a cold kernel cache)."""
    g = residual_net()
    plan = HeteroPlan("mali+a72", "a72", "mali")
    for n in non_const(g):
        plan.layers[n.name] = LayerChoice(n.name, n.op, "gpu", 0.0)
    plan.layers["c2"] = LayerChoice("c2", "conv", "split", 0.5, 8, 16)
    plan.layers["fc2"] = LayerChoice("fc2", "fully_connected", "split", 0.5, 16, 32)
    exe = compile_hetero(g, "mali+a72", plan=plan)
    order = [n.name for _, n in exe._sequence]
    assert order.index("c2@gpu") < order.index("c2@cpu")  # the hazard is really there

    finished: list[bool] = []
    freed_early: list[tuple[str, str]] = []
    enqueue, finish = exe._enqueue, exe.rt.finish

    def watching_enqueue(node: Any, env: dict, on_gpu: dict, wrapped: dict) -> Any:
        for v in node.inputs:
            if v is not None and v in on_gpu:
                weakref.finalize(on_gpu[v][1], lambda v=v.name, r=node.name: finished or freed_early.append((v, r)))
        return enqueue(node, env, on_gpu, wrapped)

    def watching_finish() -> None:
        finish()
        finished.append(True)

    monkeypatch.setattr(exe, "_enqueue", watching_enqueue)
    monkeypatch.setattr(exe.rt, "finish", watching_finish)
    feeds = feeds_for(g, 6)
    got = exe.run(feeds, emulate=True)
    assert finished and not freed_early, freed_early
    assert_matches(got, compile_numpy(g).run(feeds))


# ---- the PBQP on hand-made times ------------------------------------------------------------------
CPU, GPU = DEVICES["a72"], DEVICES["mali"]


def layer_times(g: Graph, conv_cpu: float, conv_gpu: float, other_cpu: float, other_gpu: float,
                sync_s: float, cpu_only: tuple[str, ...] = ()) -> LayerTimes:
    """Convs and FCs take conv_*, the rest other_*; `cpu_only` nodes have no GPU kernel."""
    t = LayerTimes(sync_s=sync_s, launch_s=0.0, node_s=0.0)
    for n in non_const(g):
        heavy = n.op in ("conv", "fully_connected")
        t.cpu[n.name] = conv_cpu if heavy else other_cpu
        if n.name not in cpu_only:
            t.gpu[n.name] = conv_gpu if heavy else other_gpu
    return t


def edges(g: Graph) -> list[tuple[str, str]]:
    producer = {v: n.name for n in non_const(g) for v in n.outputs}
    return [(producer[v], n.name) for n in non_const(g) for v in n.inputs if v is not None and v in producer]


def edge_cost(p: str, c: str, sync_s: float) -> float:
    """A value crosses devices: a split joins on the CPU and reads its input on both devices."""
    free = (p in ("cpu", "split") and c == "cpu") or (p == "gpu" and c == "gpu")
    return 0.0 if free else sync_s


def total(g: Graph, times: LayerTimes, devices: dict[str, str], node_cost: dict[str, float] | None = None) -> float:
    """The objective by hand: node times plus a sync per crossing edge."""
    cost = 0.0
    for n in non_const(g):
        d = devices[n.name]
        cost += node_cost[n.name] if node_cost else {"cpu": times.cpu, "gpu": times.gpu}[d].get(n.name, np.inf)
    return cost + sum(edge_cost(devices[p], devices[c], times.sync_s) for p, c in edges(g))


def best_single_device_assignment(g: Graph, times: LayerTimes) -> float:
    """The optimum over every cpu/gpu assignment (no splits), by enumeration."""
    names = [n.name for n in non_const(g)]
    return min(total(g, times, dict(zip(names, ds, strict=True))) for ds in itertools.product(("cpu", "gpu"),
                                                                                              repeat=len(names)))


def check_predicted(g: Graph, times: LayerTimes, plan: HeteroPlan) -> None:
    devices = {name: c.device for name, c in plan.layers.items()}
    for c in plan.layers.values():
        if c.device != "split":
            assert c.t_chosen == {"cpu": times.cpu, "gpu": times.gpu}[c.device][c.node]
    node_cost = {name: c.t_chosen for name, c in plan.layers.items()}
    assert plan.predicted_s == pytest.approx(total(g, times, devices, node_cost), rel=1e-12)
    assert plan.optimal
    all_cpu = sum(times.cpu.values())
    all_gpu = sum(times.gpu.values()) if len(times.gpu) == len(times.cpu) else np.inf
    assert total(g, times, dict.fromkeys(devices, "cpu")) == pytest.approx(all_cpu)
    assert plan.predicted_s <= min(all_cpu, all_gpu, best_single_device_assignment(g, times)) * (1 + 1e-12)


@pytest.mark.parametrize("gap_on_gpu", [True, False])
def test_pbqp_fast_gpu_expensive_transfers(gap_on_gpu: bool) -> None:
    """GPU 3x faster on convs/FCs, a sync (5 ms) dearer than any layer. With every layer on the GPU
    nothing crosses; without a GPU pooling kernel the best device-only plan (convs on the GPU, one
    crossing, FCs on the CPU: 14.2 ms) is beaten by splitting c1 alone, whose input is the graph's."""
    g = residual_net()
    times = layer_times(g, conv_cpu=3e-3, conv_gpu=1e-3, other_cpu=2e-4, other_gpu=2e-4, sync_s=5e-3,
                        cpu_only=() if gap_on_gpu else ("gap",))
    plan = plan_devices(g, times, "mali+a72", CPU, GPU)
    check_predicted(g, times, plan)
    if gap_on_gpu:
        assert all(c.device in ("gpu", "split") for c in plan.layers.values() if c.op == "conv"), plan.explain()
        assert plan.predicted_s == pytest.approx(sum(times.gpu.values()), rel=1e-12)
    else:
        assert best_single_device_assignment(g, times) == pytest.approx(3 * 1e-3 + 5e-3 + 2e-4 + 2 * 3e-3)
        assert plan.layers["gap"].device == "cpu" and not np.isfinite(plan.layers["gap"].t_gpu)
        assert plan.layers["c1"].device == "split", plan.explain()
        assert plan.predicted_s < best_single_device_assignment(g, times)


def test_pbqp_slow_gpu_keeps_everything_on_cpu() -> None:
    g = residual_net()
    times = layer_times(g, conv_cpu=1e-3, conv_gpu=2e-2, other_cpu=1e-4, other_gpu=2e-3, sync_s=1e-5)
    plan = plan_devices(g, times, "mali+a72", CPU, GPU)
    assert {c.device for c in plan.layers.values()} == {"cpu"}, plan.explain()
    assert all(c.cpu_share == 1.0 for c in plan.layers.values())
    check_predicted(g, times, plan)
    assert plan.predicted_s == pytest.approx(sum(times.cpu.values()), rel=1e-12)


def test_pbqp_balanced_devices_split_convs() -> None:
    g = residual_net()
    times = layer_times(g, conv_cpu=4e-3, conv_gpu=4e-3, other_cpu=1e-5, other_gpu=1e-5, sync_s=1e-5)
    plan = plan_devices(g, times, "mali+a72", CPU, GPU)
    splits = [c for c in plan.layers.values() if c.device == "split"]
    assert any(c.op == "conv" for c in splits), plan.explain()
    for c in splits:
        check_split_choice(c, g)
    check_predicted(g, times, plan)
    assert plan.predicted_s < best_single_device_assignment(g, times)  # splitting is what won


# ---- both devices on this host, measured costs ------------------------------------------------------
def test_x86_opencl_runs_natively_with_measured_costs() -> None:
    g, feeds, ref, exe = zoo_case("tiny_cnn", "x86+opencl")
    assert not exe.emulated and exe.plan.cost_source == "measured"
    assert exe.plan.cpu == "x86" and exe.plan.gpu == "opencl"
    assert all(np.isfinite(c.t_cpu) and c.t_cpu > 0 for c in exe.plan.layers.values())
    assert all(np.isfinite(c.t_gpu) for c in exe.plan.layers.values() if c.op == "conv")  # measured on the GPU
    assert_matches(exe.run(feeds), ref)
    assert "measurements" in exe.explain()


# ---- the board artifact -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, tuple]:
    case = cached_case("squeezenet1_1", "mali+a72")
    path = tmp_path_factory.mktemp("hetero") / "a"
    assert case[3].save(path) == path
    return path, case


def test_artifact_files_and_plan(artifact: tuple[Path, tuple]) -> None:
    path, (_, _, _, exe) = artifact
    for f in ("graph.lpir", "params.npz", "plan.json", "meta.json", "opencl/program.cl", "cpu/lib.o"):
        assert (path / f).is_file(), f
    assert (path / "cpu/lib.so").is_file() == bool(shutil.which("aarch64-linux-gnu-gcc"))
    assert (path / "opencl/program.cl").read_text() == exe.gpu_plan.source
    plan = json.loads((path / "plan.json").read_text())
    assert plan["target"] == "mali+a72" and plan["cpu"] == "a72" and plan["gpu"] == "mali"
    rows = {r["node"]: r for r in plan["layers"]}
    assert set(rows) == set(exe.plan.layers)
    for name, c in exe.plan.layers.items():
        assert rows[name]["device"] == c.device and rows[name]["cpu_share"] == pytest.approx(c.cpu_share, abs=1e-4)
    assert {r["device"] for r in rows.values()} == {"cpu", "gpu", "split"}
    graph, meta = load_artifact(path)
    assert meta["backend"] == "hetero" and meta["cpu_device"] == "a72"
    assert all(n.attrs.get("device") in ("cpu", "gpu") for n in non_const(graph))  # split layers expanded


def test_artifact_loads_emulated_and_matches(artifact: tuple[Path, tuple]) -> None:
    path, (_, feeds, ref, exe) = artifact
    loaded = load_hetero_artifact(path, emulate=True)
    assert loaded.gpu_plan.source == exe.gpu_plan.source
    assert {n: c.device for n, c in loaded.plan.layers.items()} == {n: c.device for n, c in exe.plan.layers.items()}
    assert_matches(loaded.run(feeds, emulate=True), ref)


@pytest.mark.skipif(platform.machine() in ("aarch64", "arm64"), reason="the artifact's CPU side runs here")
def test_artifact_for_board_refuses_without_emulate(artifact: tuple[Path, tuple]) -> None:
    with pytest.raises(LpdcTargetError, match="a72"):
        load_hetero_artifact(artifact[0])


def test_tampered_opencl_source_is_refused(artifact: tuple[Path, tuple], tmp_path: Path) -> None:
    copy = tmp_path / "tampered"
    shutil.copytree(artifact[0], copy)
    with open(copy / "opencl/program.cl", "a") as f:
        f.write("\n// edited by hand\n")
    with pytest.raises(LpdcExecutionError, match="program.cl"):
        load_hetero_artifact(copy, emulate=True)


def test_interrupted_save_leaves_nothing(artifact: tuple[Path, tuple], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    exe = artifact[1][3]
    real = Path.write_bytes
    written: list[str] = []

    def failing(self: Path, data: bytes) -> int:
        if self.name == "program.cl":  # after graph, weights and plan.json are in the temporary directory
            raise OSError("no space left on device")
        written.append(self.name)
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", failing)
    with pytest.raises(OSError, match="no space"):
        exe.save(tmp_path / "a")
    assert "plan.json" in written  # the save really was under way
    assert list(tmp_path.iterdir()) == []  # neither the artifact nor a temporary directory


def test_board_measurements_override_the_model() -> None:
    """Per-layer times measured on the board (LayerTimes) replace the analytical model's: a GPU
    that is 100x faster on every layer gets every layer."""
    from lpdc.ir import random_inputs

    g = PassManager(pipeline(2)).run(build("tiny_cnn"))
    names = [n.name for n in g.nodes if n.op != "const"]
    model = lpdc.compile(g, target="mali+a72")
    fast_gpu = LayerTimes(cpu=dict.fromkeys(names, 1e-3), gpu=dict.fromkeys(names, 1e-5))
    exe = lpdc.compile(g, target="mali+a72", costs=fast_gpu)
    assert exe.plan.cost_source == "measured" and model.plan.cost_source == "model"
    assert {c.device for c in exe.plan.layers.values()} == {"gpu"}
    ref = compile_numpy(g).run(random_inputs(g))
    out = exe.run(random_inputs(g), emulate=True)
    for k in ref:
        np.testing.assert_allclose(out[k], ref[k], rtol=1e-5, atol=1e-6)
