"""The public API: load, compile, run, profile, save/load artifacts, targets, the CLI skeleton."""

from __future__ import annotations

import lpdc
import numpy as np
import pytest
from lpdc.tools.cli import main


def _inputs(g):
    return {"data": np.random.default_rng(1).standard_normal(g.inputs[0].type.shape).astype(np.float32)}


def test_compile_runs_and_keeps_input_graph_untouched():
    g = lpdc.load("zoo:tiny_cnn")
    before = str(g)
    exe = lpdc.compile(g, target="numpy", opt_level=0)
    out = exe.run(_inputs(g))
    assert str(g) == before
    prob = out["prob"]
    assert prob.shape == (1, 10) and abs(float(prob.sum()) - 1) < 1e-5 and (prob >= 0).all()
    outs, timings = exe.profile(_inputs(g), repeats=2)
    np.testing.assert_array_equal(outs["prob"], prob)
    assert [t.name for t in timings] == [n.name for n in exe.graph.nodes]
    assert all(t.seconds >= 0 for t in timings)


def test_artifact_round_trip_and_atomic_replace(tmp_path):
    g = lpdc.load("zoo:tiny_cnn")
    path = lpdc.save(g, tmp_path / "art")
    again = lpdc.load(path)
    assert str(again) == str(g)
    want = lpdc.compile(g, opt_level=0).run(_inputs(g))["prob"]
    got = lpdc.compile(again, opt_level=0).run(_inputs(g))["prob"]
    np.testing.assert_array_equal(got, want)
    lpdc.save(g, tmp_path / "art")  # overwrite in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art"]


def test_textual_ir_file_with_weights(tmp_path):
    g = lpdc.load("zoo:tiny_cnn")
    (tmp_path / "m.lpir").write_text(str(g))
    np.savez(tmp_path / "m.npz", **g.params)
    assert str(lpdc.load(tmp_path / "m.lpir")) == str(g)


def test_cli_version_run_and_errors(capsys, tmp_path):
    assert main(["version"]) == 0
    assert capsys.readouterr().out.startswith("lpdc ")
    assert main(["run", "default", "--json"]) == 0
    assert '"prob"' in capsys.readouterr().out
    assert main(["compile", "default", "-o", str(tmp_path / "a")]) == 0
    assert main(["run", str(tmp_path / "a")]) == 0
    assert main(["run", "missing.onnx"]) == 1
    err = capsys.readouterr().err
    assert "lpdc: error:" in err and "Traceback" not in err
    with pytest.raises(SystemExit) as e:
        main(["frobnicate"])
    assert e.value.code == 2
