"""Resource limits end to end: hostile sizes refused quickly in bounded memory, the CLI limit
flags, and no loader that can execute code (no pickle)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fuzz_util import measured
from lpdc.errors import LpdcLimitError
from lpdc.frontends.caffe import load_caffe
from lpdc.ir import limits
from lpdc.tools.cli import main

MB = 2**20
REPO = Path(__file__).resolve().parents[1]


def test_a_million_layer_prototxt_is_refused_fast_in_bounded_memory(tmp_path):
    p = tmp_path / "million.prototxt"
    layer = 'layer { name: "r" type: "ReLU" bottom: "data" top: "data" }\n'
    head = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 } } }\n'
    p.write_text(head + layer * 10**6)  # 62 MB of text
    err, seconds, peak = measured(lambda: load_caffe(p))
    assert isinstance(err, LpdcLimitError), err
    assert "more than 200000 layer blocks" in str(err) and "million.prototxt" in str(err)
    assert seconds < 5 and peak < 200 * MB, (seconds, peak / MB)


def test_layer_count_prescan_counts_v0_nets_once():
    from lpdc.frontends.caffe.reader import prescan_prototxt

    v0 = 'layers { layer { name: "a" type: "relu" } }\n' * 30
    with limits.override(max_nodes=30):
        prescan_prototxt(v0, "v0")  # 30 layers, written as 30 `layers` wrapping 30 `layer`
    with limits.override(max_nodes=29), pytest.raises(LpdcLimitError, match="more than 29 layer blocks"):
        prescan_prototxt(v0, "v0")


def test_override_restores_and_nests():
    base = limits.current()
    with limits.override(max_nodes=10) as outer:
        with limits.override(max_elements=5) as inner:
            assert (inner.max_nodes, inner.max_elements) == (10, 5)
        assert limits.current() == outer and outer.max_elements == base.max_elements
    assert limits.current() == base


@pytest.mark.parametrize("flag, value, match", [
    ("--max-nodes", "5", "nodes, over the limit of 5"),
    ("--max-elements", "1e3", "over the limit of 1000"),
    ("--max-weight-bytes", "1000", "bytes of weights, over the limit of 1000"),
])
def test_cli_limit_flags(tmp_path, capsys, flag, value, match):
    onnx_path = tmp_path / "tiny.onnx"
    assert main(["zoo", "export", "tiny_cnn", "-o", str(onnx_path)]) == 0
    capsys.readouterr()
    assert main([flag, value, "run", str(onnx_path)]) == 1
    assert match in capsys.readouterr().err
    assert main([flag, "10**9", "run", str(onnx_path)]) == 0  # a generous limit: runs
    assert "output" in capsys.readouterr().out


def test_cli_limit_flags_reject_nonsense(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--max-nodes", "-3", "version"])
    assert e.value.code == 2 and "must be positive" in capsys.readouterr().err


def test_no_loader_can_execute_code():
    """np.load always with allow_pickle=False; no pickle/marshal/eval anywhere in library code."""
    offenders = []
    for f in REPO.rglob("*.py"):
        parts = f.relative_to(REPO).parts
        if "tests" in parts or parts[0] in ("build", "bench") or any(p.startswith(".") for p in parts):
            continue  # library code only: not tests, and not a virtual environment inside the checkout
        text = f.read_text(encoding="utf-8")
        for m in re.finditer(r"np\.load\((.*)", text):
            if "allow_pickle=False" not in m.group(1):
                offenders.append(f"{f.name}: np.load without allow_pickle=False")
        if re.search(r"^\s*(import|from) (pickle|marshal|dill|cloudpickle)\b", text, re.M):
            offenders.append(f"{f.name}: imports a pickle module")
        if re.search(r"(?<![\w.])(eval|exec)\(", text):
            offenders.append(f"{f.name}: eval/exec")
    assert not offenders, offenders


def test_export_and_caffemodel_writes_are_atomic(tmp_path, monkeypatch):
    """A failure while writing leaves the previous file intact and no temporary files behind."""
    import os

    from lpdc.frontends.onnx_export import export_onnx
    from lpdc.tools.zoo import build

    target = tmp_path / "m.onnx"
    target.write_bytes(b"previous")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        export_onnx(build("tiny_cnn"), target)
    assert target.read_bytes() == b"previous" and sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]
