"""The `lpdc` command end to end on a zoo model: every subcommand, its outputs and its exit code."""

from __future__ import annotations

import csv
import json

import lpdc
import matplotlib.image as mpimg
import numpy as np
import pytest
from lpdc.tools import viz
from lpdc.tools.cli import main

MODEL = "zoo:tiny_cnn"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_version_zoo_list_and_help_epilog(capsys):
    code, out, _ = _run(capsys, "version")
    assert code == 0 and out.startswith("lpdc ")
    code, out, _ = _run(capsys, "zoo", "list")
    assert code == 0 and "tiny_cnn" in out.split()
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "130  interrupted" in capsys.readouterr().out


def test_run_compile_and_run_the_artifact(capsys, tmp_path):
    code, out, _ = _run(capsys, "run", MODEL, "--json", "--save-outputs", str(tmp_path / "o.npz"))
    first = json.loads(out)
    assert code == 0 and first["outputs"]["prob"]["shape"] == [1, 10]
    with np.load(tmp_path / "o.npz") as saved:
        assert int(np.argmax(saved["prob"])) == first["outputs"]["prob"]["argmax"]
    code, out, _ = _run(capsys, "compile", MODEL, "-o", str(tmp_path / "art"))
    assert code == 0 and "wrote" in out and (tmp_path / "art" / "graph.lpir").exists()
    code, out, _ = _run(capsys, "run", str(tmp_path / "art"), "--json")
    again = json.loads(out)["outputs"]["prob"]
    assert code == 0 and again["argmax"] == first["outputs"]["prob"]["argmax"]
    assert again["mean"] == pytest.approx(first["outputs"]["prob"]["mean"], rel=1e-6)


def test_opt_prints_ir_after_each_pass(capsys):
    code, out, _ = _run(capsys, "opt", MODEL, "-p", "plan-memory", "--print-after-all")
    assert code == 0 and out.startswith("// ---- IR after:plan-memory\ngraph @tiny_cnn(")
    code, out, _ = _run(capsys, "opt", MODEL, "-p", "fold-bn,fuse-activation", "--print-after-all")
    dumps = out.split("// ---- IR ")[1:]
    assert code == 0 and [d.split("\n")[0] for d in dumps] == ["after:fold-bn", "after:fuse-activation"]
    assert "batch_norm" in str(lpdc.load(MODEL)) and "batch_norm" not in dumps[0]
    assert 'activation="relu"' in dumps[1] and "= relu(" not in dumps[1]
    code, out, _ = _run(capsys, "opt", MODEL)
    assert code == 0 and out.startswith("graph @tiny_cnn(") and "return %prob" in out
    code, _, err = _run(capsys, "opt", MODEL, "-p", "no-such-pass")
    assert code == 1 and "unknown pass 'no-such-pass'" in err


def test_analyze_table_json_and_plot(capsys, tmp_path):
    code, out, _ = _run(capsys, "analyze", MODEL, "--bits", "8", "--plot", str(tmp_path / "a.png"))
    assert code == 0 and "TOTAL" in out and "at 8-bit" in out and "wrote" in out
    assert mpimg.imread(tmp_path / "a.png").shape[0] > 300
    code, out, _ = _run(capsys, "analyze", MODEL, "--json")
    d = json.loads(out)
    assert code == 0 and d["bits"] == 32 and d["total"]["params"] == 6090 and d["total"]["macs"] == 840_000
    code, out, _ = _run(capsys, "analyze", MODEL, "--json", "-O", "2")
    assert code == 0 and json.loads(out)["total"]["macs"] == 840_000  # folding and fusion keep the MACs
    code, out, _ = _run(capsys, "analyze", "zoo:mobilenet_v1", "--json", "--bits", "8")
    total = json.loads(out)["total"]
    assert code == 0 and total["params"] == pytest.approx(4.2e6, rel=0.03)
    assert total["weight_bytes"] == pytest.approx(total["params"], rel=1e-3)  # one byte per 8-bit weight
    with pytest.raises(SystemExit) as e:
        main(["analyze", MODEL, "--bits", "4"])
    assert e.value.code == 2


def test_bench_json_csv_and_plot(capsys, tmp_path):
    code, out, _ = _run(capsys, "bench", MODEL, "--target", "numpy", "--layers", "--primitives", "--repeats", "2",
                        "--gemm-size", "64", "--json", "--csv", str(tmp_path / "b.csv"),
                        "--plot", str(tmp_path / "b.png"))
    d = json.loads(out)
    assert code == 0 and d["end_to_end"]["runs"] == 2
    e2e = d["end_to_end"]
    assert 0 < e2e["min_ms"] <= e2e["median_ms"] <= e2e["max_ms"]
    assert [g["n"] for g in d["gemm"]][:1] == [64] and d["gemm_peak_gflops"] > 0 and d["bandwidth_gbs"] > 0
    conv1 = next(x for x in d["layers"] if x["name"] == "conv1")
    node = next(n for n in lpdc.compile(lpdc.load(MODEL)).graph.nodes if n.name == "conv1")  # as benchmarked (O2)
    want = node.schema.flops([v and v.type for v in node.inputs], [node.output.type], node.attrs).total
    assert conv1["op"] == "conv" and conv1["flops"] == want >= 2 * 442_368 and conv1["median_ms"] > 0
    assert "const" not in {x["op"] for x in d["layers"]}
    rows = list(csv.DictReader(open(tmp_path / "b.csv")))
    assert {r["kind"] for r in rows} >= {"end_to_end", "gemm", "layer"}
    assert len([r for r in rows if r["kind"] == "layer"]) == len(d["layers"])
    img = mpimg.imread(tmp_path / "b.png")
    assert img.shape[0] > 300 and img[..., :3].std() > 0.05
    code, out, _ = _run(capsys, "bench", MODEL, "--repeats", "1", "--gemm-size", "32")
    assert code == 0 and "end to end median" in out and "roofline: GEMM peak" in out


def test_bench_bad_values_are_lpdc_errors(capsys):
    code, _, err = _run(capsys, "bench", MODEL, "--repeats", "0")
    assert code == 1 and "lpdc: error: --repeats must be at least 1" in err
    code, _, err = _run(capsys, "bench", MODEL, "--target", "mali+nosuch", "--repeats", "1")
    assert code == 1 and "lpdc: error:" in err and "Traceback" not in err


def test_viz_writes_svg_or_dot(capsys, tmp_path):
    code, out, err = _run(capsys, "viz", MODEL, "-o", str(tmp_path / "g.svg"))
    assert code == 0
    if viz.dot_available():
        text = (tmp_path / "g.svg").read_text()
        assert text.lstrip().startswith("<?xml") and ">conv1</text>" in text and ">prob</text>" in text
    else:
        assert "apt-get install graphviz" in err and (tmp_path / "g.dot").exists()
    code, out, _ = _run(capsys, "viz", MODEL, "--plan", "-o", str(tmp_path / "p.dot"))
    src = (tmp_path / "p.dot").read_text()
    assert code == 0 and "primitive:" in src and "@" in src and "wrote" in out


def test_viz_without_dot_falls_back_to_source(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    code, _, err = _run(capsys, "viz", MODEL, "-o", str(tmp_path / "g.svg"))
    assert code == 0 and "lpdc: warning:" in err and (tmp_path / "g.dot").read_text().startswith("digraph")
    code, _, err = _run(capsys, "viz", MODEL, "--strict", "-o", str(tmp_path / "h.svg"))
    assert code == 1 and "lpdc: error:" in err and "not installed" in err


@pytest.mark.parametrize("cmd", ["run", "analyze", "bench", "viz", "opt", "compile"])
def test_bad_model_path_is_a_clean_error(capsys, tmp_path, cmd):
    extra = ["-o", str(tmp_path / "x.svg")] if cmd == "viz" else []
    code, out, err = _run(capsys, cmd, str(tmp_path / "missing.onnx"), *extra)
    assert code == 1 and err.startswith("lpdc: error:") and "missing.onnx" in err and "Traceback" not in err


def test_quiet_and_json_keep_stdout_clean(capsys, tmp_path):
    code, out, err = _run(capsys, "--quiet", "analyze", MODEL, "--plot", str(tmp_path / "q.png"))
    assert code == 0 and "wrote" not in out and err == ""
    code, out, err = _run(capsys, "bench", MODEL, "-q", "--repeats", "1", "--gemm-size", "32", "--json")
    assert code == 0 and isinstance(json.loads(out), dict) and err == ""
    assert np.isfinite(json.loads(out)["end_to_end"]["median_ms"])
