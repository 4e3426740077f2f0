"""Fuzzing the textual-IR parser and the artifact loader: every input ends in a graph or an LpdcError."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lpdc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lpdc.errors import LpdcError
from lpdc.ir import parse
from op_samples import every_op_graph

BASE = every_op_graph()
TEXT = str(BASE)


def _parse_or_lpdc_error(text: str) -> None:
    try:
        parse(text, BASE.params)
    except LpdcError as e:
        assert str(e)  # a message, never empty
    except RecursionError:  # pragma: no cover - would be a bug: nesting must be bounded
        pytest.fail("parser recursed without bound")


@settings(max_examples=300)
@given(st.data())
def test_mutated_textual_ir_parses_or_raises_lpdc_error(data):
    text = TEXT
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(text) - 1))
        kind = data.draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        piece = data.draw(st.text(alphabet="%@[](){}<>,:=-_.0123456789abcdefxyz\"\\ \n", max_size=6))
        if kind == "delete":
            text = text[:i] + text[i + data.draw(st.integers(1, 40)):]
        elif kind == "insert":
            text = text[:i] + piece + text[i:]
        elif kind == "replace":
            text = text[:i] + piece + text[i + len(piece):]
        else:
            j = min(len(text), i + data.draw(st.integers(1, 200)))
            text = text[:j] + text[i:j] + text[j:]
    _parse_or_lpdc_error(text)


@settings(max_examples=200)
@given(st.text(max_size=300))
def test_random_text_raises_lpdc_error(text):
    _parse_or_lpdc_error(text)


def test_deep_nesting_and_huge_shapes_are_refused_cleanly():
    deep = "graph @g(%x: f32[1]) -> (%y) {\n  %y = relu(%x) {a=" + "[" * 50_000 + "]" * 50_000 + "} : f32[1]\n"
    _parse_or_lpdc_error(deep + "  return %y\n}")
    huge = "graph @g(%x: f32[1099511627776]) -> (%x) {\n  return %x\n}"
    with pytest.raises(LpdcError, match="over the limit"):
        parse(huge)


def _corrupt_artifacts(tmp: Path) -> list[tuple[str, Path]]:
    g = lpdc.load("zoo:tiny_cnn")
    cases = []
    for name, damage in [
        ("missing-graph", lambda d: (d / "graph.lpir").unlink()),
        ("truncated-graph", lambda d: (d / "graph.lpir").write_text((d / "graph.lpir").read_text()[:300])),
        ("truncated-params", lambda d: (d / "params.npz").write_bytes((d / "params.npz").read_bytes()[:100])),
        ("pickled-params",
         lambda d: np.savez(d / "params.npz", **{k: np.array([None], dtype=object) for k in g.params})),
        ("bad-meta", lambda d: (d / "meta.json").write_text("{not json")),
        ("wrong-format", lambda d: (d / "meta.json").write_text('{"format": "other"}')),
        ("wrong-weight-shape", lambda d: np.savez(d / "params.npz", **{k: np.zeros(3, np.float32) for k in g.params})),
    ]:
        d = lpdc.save(g, tmp / name)
        damage(d)
        cases.append((name, d))
    return cases


def test_corrupt_artifacts_raise_lpdc_error_naming_the_path(tmp_path):
    for name, d in _corrupt_artifacts(tmp_path):
        with pytest.raises(LpdcError) as e:
            lpdc.load(d)
        assert str(d) in str(e.value) or "graph.lpir" in str(e.value), name


_COMPILE_LOOP = """
import sys
from lpdc.tools.cli import main
for i in range(10_000):
    assert main(["--quiet", "compile", "default", "-o", sys.argv[1]]) == 0
"""


@pytest.mark.parametrize("delay", [0.6, 0.9, 1.3, 1.7])
def test_killed_compile_leaves_artifact_absent_or_complete(tmp_path, delay):
    """SIGKILL `lpdc compile default -o DIR` (looping, so the kill lands at a random point of a
    compile or a write): DIR is always either absent or a complete artifact."""
    out = tmp_path / "art"
    proc = subprocess.Popen([sys.executable, "-c", _COMPILE_LOOP, str(out)], start_new_session=True,
                            stdout=subprocess.DEVNULL)
    time.sleep(delay + (os.getpid() % 7) / 20)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    if out.exists():
        g = lpdc.load(out)
        ref = lpdc.compile(lpdc.load("zoo:tiny_cnn"))
        assert str(g) == str(ref.graph)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != "art"]
    assert all(p.startswith(".art.") for p in leftovers)  # only hidden temporaries, never a half artifact
