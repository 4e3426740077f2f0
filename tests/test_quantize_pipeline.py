"""The pipeline from the command line: `lpdc quantize MODEL --report` (layer analysis, then network
space exploration) writes a sensitivity table, plot and configuration that `lpdc compile
--quant-config` applies; with labels (digits) it judges top-1, without (zoo) output SQNR."""

from __future__ import annotations

import json

import lpdc
import numpy as np
from lpdc.passes.quantize import QuantConfig, quantize
from lpdc.tools.cli import main
from lpdc.tools.digits_cnn import accuracy, digits_split


def test_cli_pipeline_on_digits_then_compile_with_its_config(tmp_path, capsys):
    out = tmp_path / "rep"
    rc = main(["quantize", "digits", "--calib", "300", "--scheme", "fixed", "--report", "-o", str(out),
               "--widths", "3,4,5,6,8", "--budget", "1", "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    for name in ("sensitivity.txt", "sensitivity.csv", "sensitivity.json", "quant_config.json", "exploration.json"):
        assert (out / name).stat().st_size > 0
    assert (out / "sensitivity.png").read_bytes()[:4] == b"\x89PNG"
    rows = json.loads((out / "sensitivity.json").read_text())["rows"]
    assert len(rows) == 3 * 3 * 5 and {r["variable"] for r in rows} == {"weights", "activations", "bias"}
    summary = json.loads((out / "exploration.json").read_text())
    assert summary["met"] and summary["metric"] == "accuracy"
    assert "layer analysis" in text and "mixed configuration on the test split" in text
    config = QuantConfig.load(out / "quant_config.json")
    assert set(config.layers) == {"conv1", "conv2", "fc"}

    art = tmp_path / "compiled"
    assert main(["compile", str(out / "model"), "--quant-config", str(out / "quant_config.json"), "-o", str(art)]) == 0
    capsys.readouterr()
    split = digits_split(0)
    compiled = lpdc.load(art)
    direct = quantize(lpdc.load(out / "model"), None, out / "quant_config.json")
    assert accuracy(compiled, split.x_test, split.y_test) == accuracy(direct, split.x_test, split.y_test)
    float_acc = accuracy(lpdc.load(out / "model"), split.x_test, split.y_test)
    assert accuracy(direct, split.x_test, split.y_test) >= float_acc - 0.01


def test_cli_pipeline_without_labels_uses_output_sqnr(tmp_path, capsys):
    out = tmp_path / "rep"
    rc = main(["quantize", "zoo:tiny_cnn", "--calib", "2", "--eval", "2", "--scheme", "int8", "--report",
               "--widths", "4,8", "--variables", "weights", "--budget", "25", "-o", str(out), "--no-progress"])
    text = capsys.readouterr().out
    assert rc == 0, text
    summary = json.loads((out / "exploration.json").read_text())
    assert summary["metric"] == "sqnr" and summary["met"] and summary["quantized"] >= 25.0
    assert "SQNR dB" in text
    assert not (out / "model").exists()  # the zoo model needs no copy: zoo:tiny_cnn loads it


def test_cli_quantize_with_a_scheme_saves_a_runnable_artifact(tmp_path, capsys):
    art = tmp_path / "q"
    assert main(["quantize", "zoo:tiny_cnn", "--scheme", "fixed8", "--calib", "2", "--eval", "2",
                 "-o", str(art)]) == 0
    assert "output SQNR" in capsys.readouterr().out
    g = lpdc.load(art)
    assert any(n.op == "requantize" for n in g.nodes)
    x = np.random.default_rng(0).standard_normal(g.inputs[0].type.shape).astype(np.float32)
    prob = lpdc.compile(g).run({g.inputs[0].name: x})["prob"]
    assert abs(float(prob.sum()) - 1) < 1e-4


def test_passes_before_quantization_put_batch_norm_inside_integer_layers():
    g = lpdc.load("zoo:tiny_cnn")
    feeds = [{"data": np.random.default_rng(s).standard_normal((1, 3, 32, 32)).astype(np.float32)} for s in range(3)]
    q = quantize(g, feeds, "int8", passes=("fold-bn", "fuse-activation"))
    assert not any(n.op == "batch_norm" for n in q.nodes)
    ref = lpdc.compile(g, opt_level=0).run(feeds[0])["prob"]
    got = lpdc.compile(q, opt_level=0).run(feeds[0])["prob"]
    assert np.argmax(ref) == np.argmax(got) and np.abs(ref - got).max() < 0.05
