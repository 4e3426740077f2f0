"""Measured per-layer kernel variants of the TVM backend (compile_tvm(variants="measure")).

Each conv gets several register tiles (and Winograd where it applies) built and timed on this
host; the fastest is used, the decision is recorded, and the times persist on disk so a
recompile measures nothing. Whatever is picked must compute the reference's numbers.
"""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

pytest.importorskip("tvm")

from backend_util import assert_matches  # noqa: E402
from lpdc.backends.numpy import compile_numpy  # noqa: E402
from lpdc.backends.tvm import compile_tvm  # noqa: E402
from lpdc.backends.tvm import variants as V  # noqa: E402
from lpdc.errors import LpdcError, LpdcTargetError  # noqa: E402
from lpdc.tools.builder import NetBuilder  # noqa: E402


def _net():
    b = NetBuilder("v", (1, 16, 14, 14), seed=1)
    y = b.act(b.conv(b.x, 32, 3, pad=1))
    y = b.act(b.g.op("add", b.conv(y, 16, 3, pad=1), b.x))
    return b.finish(b.conv(y, 24, 1))


def test_measured_variants_pick_the_fastest_and_compute_the_reference(tmp_path, monkeypatch):
    monkeypatch.setenv(V.TIMES_ENV, str(tmp_path / "times.json"))
    g = _net()
    x = {"data": np.random.default_rng(0).standard_normal((1, 16, 14, 14)).astype(np.float32)}
    exe = compile_tvm(g, "x86", variants="measure")
    assert set(exe.variant_choices) == {n.name for n in g.nodes if n.op == "conv"}
    for rec in exe.variant_choices.values():
        assert rec["how"] == "measured" and len(rec["times"]) >= 2
        assert rec["times"][rec["picked"]] == min(rec["times"].values())
        assert all(t > 0 for t in rec["times"].values())
    assert_matches(exe.run(x), compile_numpy(g).run(x), rtol=1e-5)
    again = compile_tvm(g, "x86", variants="measure")  # the times file answers: nothing is rebuilt to time
    assert {r["how"] for r in again.variant_choices.values()} == {"cached"}
    assert {k: r["picked"] for k, r in again.variant_choices.items()} == \
        {k: r["picked"] for k, r in exe.variant_choices.items()}


def test_the_pick_follows_the_times(tmp_path, monkeypatch):
    """With fake timings the slowest-scored tile is chosen when it is the fastest, and runs correctly."""
    monkeypatch.setenv(V.TIMES_ENV, str(tmp_path / "times.json"))
    from lpdc.backends.tvm import sparse_select

    def fake(low, tt):  # the largest ow_tile is "fastest"
        kn = low.info.get("knobs")
        return 1.0 / (kn.ow_tile * 1000 + kn.oc_tile) if kn is not None else 1.0

    monkeypatch.setattr(sparse_select, "time_lowered", fake)
    g = _net()
    exe = compile_tvm(g, "x86", variants="measure")
    for name, rec in exe.variant_choices.items():
        tiles = [(int(label.split()[1].split("x")[0]), label) for label in rec["times"] if label.startswith("direct")]
        assert rec["picked"] == max(tiles)[1], name
    x = {"data": np.random.default_rng(1).standard_normal((1, 16, 14, 14)).astype(np.float32)}
    assert_matches(exe.run(x), compile_numpy(g).run(x), rtol=1e-5)


def test_default_mode_measures_nothing_and_bad_modes_are_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(V.TIMES_ENV, str(tmp_path / "times.json"))
    exe = compile_tvm(_net(), "x86")
    assert exe.variant_choices == {} and not (tmp_path / "times.json").exists()
    with pytest.raises(LpdcError, match="variants must be one of"):
        compile_tvm(_net(), "x86", variants="fast")
    with pytest.raises(LpdcTargetError, match="this host"):
        compile_tvm(_net(), "a72", variants="measure")


def test_an_unreadable_times_file_is_ignored_and_rewritten(tmp_path, monkeypatch):
    path = tmp_path / "times.json"
    path.write_text("{not json")
    monkeypatch.setenv(V.TIMES_ENV, str(path))
    exe = compile_tvm(_net(), "x86", variants="measure")
    assert exe.variant_choices and len(__import__("json").loads(path.read_text())) >= 2


def test_o3_on_the_host_target_times_tvm_variants_instead_of_numpy_primitives(tmp_path, monkeypatch):
    """The NumPy primitive PBQP does not apply to TVM kernels (they would fall back to NumPy);
    O3 for x86 measures the TVM variants instead, and every layer still runs on TVM."""
    import lpdc

    monkeypatch.setenv(V.TIMES_ENV, str(tmp_path / "times.json"))
    g = _net()
    exe = lpdc.compile(g, "x86", opt_level=3)
    assert exe.fallbacks == {} and exe.variant_choices
    assert "select-primitives" not in [r.name for r in exe.pass_records]
    assert all(n.attrs.get("primitive", "") == "" for n in exe.graph.nodes if n.op == "conv")
    x = {"data": np.random.default_rng(2).standard_normal((1, 16, 14, 14)).astype(np.float32)}
    assert_matches(exe.run(x), compile_numpy(g).run(x), rtol=1e-5)


@pytest.mark.parametrize("ratio", [None, 1.1])  # real end-to-end timing; a forced loss for the measured picks
def test_cli_compile_explains_the_measured_kernel_choices(ratio, tmp_path, monkeypatch, capsys):
    from lpdc.backends.tvm import variant_check
    from lpdc.tools.cli import main

    monkeypatch.setenv(V.TIMES_ENV, str(tmp_path / "times.json"))
    if ratio is not None:  # picks that differ from the default tiles (the largest ow_tile "fastest"), then lose
        from lpdc.backends.tvm import sparse_select

        monkeypatch.setattr(sparse_select, "time_lowered", lambda low, tt: (
            1.0 / (low.info["knobs"].ow_tile * 1000 + low.info["knobs"].oc_tile)
            if low.info.get("knobs") is not None else 1.0))
        monkeypatch.setattr(variant_check, "in_model_ratio", lambda a, b: (ratio, 1e-3, ratio * 1e-3))
    assert main(["compile", "zoo:tiny_cnn", "--target", "x86", "--variants", "measure", "--sparse", "measure",
                 "--explain", "--no-progress"]) == 0
    out = capsys.readouterr().out
    # each conv: the picked variant, then every candidate's time, fastest first; which one wins
    # depends on the CPU (Winograd beats the direct tiles on some), so the check is that the pick is the
    # fastest; whether the picks run at all is the end-to-end check's call ("not used" when they lose)
    explained = re.findall(r"^  (conv\d+): (.+?) \(measured(?:, not used)?; (.+)\)$", out, flags=re.M)
    assert sorted(name for name, _, _ in explained) == ["conv1", "conv3", "conv4"], out
    for name, picked, times in explained:
        labels = [item.rsplit(" ", 2)[0] for item in times.split(", ")]
        assert len(labels) >= 2 and labels[0] == picked, (name, picked, times)
    if ratio is not None:
        assert "-> the default tiles run" in out and out.count(", not used;") == 3
    assert "fc1: dense (too dense" in out  # an unpruned FC is never timed sparse
    assert main(["compile", "zoo:tiny_cnn", "--target", "numpy", "--sparse", "on"]) == 1
    assert "not a TVM target" in capsys.readouterr().err


def test_in_model_ratio_times_both_in_alternating_blocks():
    from lpdc.backends.tvm.variant_check import in_model_ratio

    calls = []
    ratio, ta, tb = in_model_ratio(lambda: (calls.append("a"), time.sleep(0.002)),
                                   lambda: (calls.append("b"), time.sleep(0.006)), rounds=3, block=2)
    assert 2.0 < ratio < 4.5 and 0.002 <= ta < tb
    assert "".join(calls) == "aaabbb" + "bbbaaa" + "aaabbb"  # a warm-up run, then the block; order alternates


@pytest.mark.parametrize(("ratio", "kept"), [(0.9, "measured"), (1.1, "default")])
def test_measured_picks_run_only_if_the_model_is_faster(ratio, kept, tmp_path, monkeypatch):
    from lpdc.backends.tvm import variant_check
    from lpdc.backends.tvm.artifact import load_tvm_artifact, save_tvm_artifact

    monkeypatch.setenv(V.TIMES_ENV, str(tmp_path / "times.json"))
    from lpdc.backends.tvm import sparse_select

    def fake(low, tt):  # the largest ow_tile is "fastest": picks that differ from the default tiles
        kn = low.info.get("knobs")
        return 1.0 / (kn.ow_tile * 1000 + kn.oc_tile) if kn is not None else 1.0

    monkeypatch.setattr(sparse_select, "time_lowered", fake)
    monkeypatch.setattr(variant_check, "in_model_ratio", lambda a, b: (ratio, 1e-3, ratio * 1e-3))
    g = _net()
    exe = compile_tvm(g, "x86", variants="measure")
    default = compile_tvm(g, "x86")
    assert exe.variant_check["kept"] == kept
    assert all(r["used"] == (kept == "measured") for r in exe.variant_choices.values())
    assert (exe.plan.kernel_keys == default.plan.kernel_keys) == (kept == "default")
    x = {"data": np.random.default_rng(3).standard_normal((1, 16, 14, 14)).astype(np.float32)}
    got = exe.run(x)
    assert_matches(got, compile_numpy(g).run(x), rtol=1e-5)
    back = load_tvm_artifact(save_tvm_artifact(exe, tmp_path / "art"))  # replays exactly what ran
    assert back.plan.kernel_keys == exe.plan.kernel_keys
    for k, v in back.run(x).items():
        np.testing.assert_array_equal(v, got[k])
