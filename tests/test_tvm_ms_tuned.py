"""meta_schedule kernels in the TVM x86 backend (compile_tvm(ms_trials=...), backends/tvm/ms_tuned.py).

One real tuning (2 trials of a small conv, module fixture: meta_schedule's first use costs ~14 s)
fills a cache dir; later compiles replay its trace. Whether a tuned kernel is used is pinned with
fixed fake timings in each direction (the shared machine's real times decide nothing here), and
every module's output is checked against the NumPy reference.
"""

from __future__ import annotations

import json
import types

import numpy as np
import pytest

pytest.importorskip("tvm")

from lpdc.backends.numpy import compile_numpy  # noqa: E402
from lpdc.backends.tvm import build as B  # noqa: E402
from lpdc.backends.tvm import compile_tvm  # noqa: E402
from lpdc.backends.tvm import ms_tuned as MS  # noqa: E402
from lpdc.backends.tvm.lower_quant import materialize_weights  # noqa: E402
from lpdc.backends.tvm.target import tvm_target  # noqa: E402
from lpdc.errors import LpdcTargetError  # noqa: E402
from lpdc.ir import Graph, TensorType  # noqa: E402


def conv_net(fc: int = 0) -> Graph:
    """x (1x16x14x14) -> conv 3x3 dilation 2 pad 2 (16 filters, bias, relu) [-> conv 1x1 (8) -> fully_connected(fc)]."""
    rng = np.random.default_rng(0)
    g = Graph("ms")
    x = g.add_input("x", TensorType((1, 16, 14, 14), "f32"))
    w = g.add_const((rng.standard_normal((16, 16, 3, 3)) / 12).astype(np.float32), "w")
    b = g.add_const(rng.standard_normal(16).astype(np.float32), "b")
    # dilation 2: a direct-template kernel (a plain 3x3 would get the Winograd default, not tuned here)
    y = g.op("conv", x, w, b, name="conv", stride=[1, 1], pad=[2], dilation=[2, 2], activation="relu")
    if fc:
        w2 = g.add_const((rng.standard_normal((8, 16, 1, 1)) / 4).astype(np.float32), "w2")
        y = g.op("conv", y, w2, name="conv1x1", stride=[1, 1], pad=[0], dilation=[1, 1])
        wf = g.add_const((rng.standard_normal((fc, 8 * 14 * 14)) / 40).astype(np.float32), "wf")
        y = g.op("fully_connected", y, wf, name="fc")
    g.set_outputs([y])
    return g


def check_output(exe, g: Graph, feeds: dict[str, np.ndarray]) -> np.ndarray:
    (out,) = g.outputs
    ref = compile_numpy(g).run(feeds)[out.name]
    got = exe.run(feeds)[out.name]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-5 * float(np.abs(ref).max()))
    return got


@pytest.fixture(scope="module")
def tuned_once(tmp_path_factory):
    """(graph, feeds, cache dir, executable) of the one real meta_schedule tuning."""
    cache = tmp_path_factory.mktemp("ms_cache")
    g = conv_net()
    feeds = {"x": np.random.default_rng(1).standard_normal((1, 16, 14, 14)).astype(np.float32)}
    exe = compile_tvm(g, "x86", ms_trials=2, ms_layers=1, ms_cache=str(cache))
    return g, feeds, cache, exe


def test_first_compile_tunes_times_and_records(tuned_once):
    g, feeds, cache, exe = tuned_once
    check_output(exe, g, feeds)
    (name, rec), = exe.ms_kernels.items()
    assert rec["nodes"] == ["conv"] and rec["trials"] == 2 and rec["cached"] is False
    assert rec["flops"] == 2 * 14 * 14 * 16 * 16 * 9
    assert 0 < rec["default_s"] < 1 and 0 < rec["tuned_s"] < 1
    assert rec["used"] is (rec["tuned_s"] < rec["default_s"])
    files = list(cache.glob("ms_*.json"))
    assert [str(p) for p in files] == [rec["trace_file"]]
    meta = json.loads(files[0].read_text())
    assert meta["trials"] == 2 and meta["kernel"] == name and meta["trace"]


def test_second_compile_replays_the_cached_trace(tuned_once, monkeypatch):
    g, feeds, cache, first = tuned_once

    def no_tuning(*a, **k):
        raise AssertionError("tuned again despite a cached trace")

    monkeypatch.setattr(MS, "_tune", no_tuning)
    exe = compile_tvm(g, "x86", ms_trials=2, ms_layers=1, ms_cache=str(cache))
    check_output(exe, g, feeds)
    (rec,) = exe.ms_kernels.values()
    assert rec["cached"] is True and rec["trials"] == 2
    assert rec["trace_file"] == next(iter(first.ms_kernels.values()))["trace_file"]
    assert rec["used"] is (rec["tuned_s"] < rec["default_s"])
    assert exe.build_seconds < 30  # replay + two small builds; tuning alone costs more than this


def test_more_trials_than_cached_tunes_again(tuned_once, monkeypatch):
    g, _, cache, _ = tuned_once
    calls = []
    trace = json.loads(next(cache.glob("ms_*.json")).read_text())["trace"]
    monkeypatch.setattr(MS, "_tune", lambda f, tt, trials: calls.append(trials) or trace)
    exe = compile_tvm(g, "x86", ms_trials=3, ms_layers=1, ms_cache=str(cache))
    (rec,) = exe.ms_kernels.values()
    assert calls == [3] and rec["cached"] is False and rec["trials"] == 3
    assert json.loads(next(cache.glob("ms_*.json")).read_text())["trials"] == 3


@pytest.mark.parametrize(("times", "used"), [((2e-3, 1e-3, True), True), ((1e-3, 2e-3, True), False),
                                             ((2e-3, 1e-3, False), False)])
def test_tuned_kernel_goes_into_the_module_only_when_faster(tuned_once, monkeypatch, times, used):
    """Fake (default, tuned, same output) timings: the module gets the tuned kernel exactly when used."""
    g, feeds, cache, _ = tuned_once
    monkeypatch.setattr(MS, "_time_pair", lambda f, tuned_f, low, tt: times)
    seen = {}
    real_build = B.build_module

    def spy(plan, tt, *a, tuned=None, **k):
        seen.update(tuned or {})
        return real_build(plan, tt, *a, tuned=tuned, **k)

    monkeypatch.setattr(B, "build_module", spy)
    exe = compile_tvm(g, "x86", ms_trials=2, ms_layers=1, ms_cache=str(cache))
    (name, rec), = exe.ms_kernels.items()
    assert rec["used"] is used and (rec["default_s"], rec["tuned_s"]) == times[:2]
    assert set(seen) == ({name} if used else set())
    check_output(exe, g, feeds)  # with the tuned kernel in the module when used


def test_stale_cached_trace_is_tuned_again(tuned_once, monkeypatch, caplog):
    g, feeds, cache, _ = tuned_once
    path = next(cache.glob("ms_*.json"))
    good = json.loads(path.read_text())
    path.write_text(json.dumps({**good, "trials": 99, "trace": [[["NoSuchInstruction", [], [], []]], []]}))
    calls = []
    monkeypatch.setattr(MS, "_tune", lambda f, tt, trials: calls.append(trials) or good["trace"])
    exe = compile_tvm(g, "x86", ms_trials=2, ms_layers=1, ms_cache=str(cache))
    (rec,) = exe.ms_kernels.values()
    assert calls == [2] and rec["cached"] is False and "does not replay" in caplog.text
    assert json.loads(path.read_text())["trials"] == 2
    check_output(exe, g, feeds)


def test_ms_trials_zero_changes_nothing(tmp_path, monkeypatch):
    g = conv_net()
    feeds = {"x": np.random.default_rng(2).standard_normal((1, 16, 14, 14)).astype(np.float32)}
    base = compile_tvm(g, "x86")

    def no_tuning(*a, **k):
        raise AssertionError("ms_trials=0 must not tune")

    monkeypatch.setattr(MS, "tune_plan", no_tuning)
    exe = compile_tvm(g, "x86", ms_trials=0, ms_layers=5, ms_cache=str(tmp_path))
    assert exe.ms_kernels == {} and list(tmp_path.iterdir()) == []
    assert list(exe.plan.kernels) == list(base.plan.kernels)
    np.testing.assert_array_equal(check_output(exe, g, feeds), base.run(feeds)[g.outputs[0].name])


def test_heaviest_ranks_conv_and_fc_kernels_by_total_flops():
    g = materialize_weights(conv_net(fc=10))
    plan = B.plan_graph(g, tvm_target("x86"))
    ranked = MS.heaviest(plan, 5)
    assert [r[2] for r in ranked] == [["conv"], ["conv1x1"], ["fc"]]
    flops = [r[1] for r in ranked]
    assert flops[0] == 2 * 14 * 14 * 16 * 16 * 9 and flops[2] == 2 * 10 * 8 * 14 * 14
    assert flops[1] >= 2 * 14 * 14 * 8 * 16  # the 1x1 conv computes its channels padded to the register tile
    assert MS.heaviest(plan, 1) == ranked[:1]


def test_cache_dir_default_and_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LPDC_MS_CACHE", str(tmp_path / "env"))
    assert MS.ms_cache_dir() == tmp_path / "env" and MS.ms_cache_dir(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("LPDC_MS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert MS.ms_cache_dir() == tmp_path / "lpdc" / "ms_kernels"


def test_board_target_refuses_ms_trials():
    with pytest.raises(LpdcTargetError, match="this host"):
        compile_tvm(conv_net(), "a72", ms_trials=2)


def test_cli_forwards_ms_options(monkeypatch, capsys):
    import lpdc.api
    from lpdc.tools.cli import main

    got = {}

    def fake_compile(graph, target, opt_level, **options):
        got.update(options, target=target)
        rec = {"default_s": 2e-3, "tuned_s": 1e-3, "used": True, "trials": 4, "cached": False}
        return types.SimpleNamespace(graph=graph, pass_records=[], ms_kernels={"k0_conv": rec})

    monkeypatch.setattr(lpdc.api, "compile", fake_compile)
    assert main(["compile", "zoo:tiny_cnn", "--target", "x86", "--ms-trials", "4", "--ms-layers", "2",
                 "--no-progress"]) == 0
    assert got["target"] == "x86" and got["ms_trials"] == 4 and got["ms_layers"] == 2
    assert "k0_conv" in capsys.readouterr().out
    assert main(["compile", "zoo:tiny_cnn", "--target", "numpy", "--ms-trials", "4"]) != 0
