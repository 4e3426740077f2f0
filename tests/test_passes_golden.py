"""Golden textual-IR tests: tests/golden/<case>.lpir holds `// RUN: passes`, the input graph,
`// CHECK:` and the expected graph. Each case also runs under NumericCheck, so a golden file
that encodes a wrong rewrite fails on numbers too.

Writing a test for a new pass = copying one .lpir file. Set LPDC_UPDATE_GOLDEN=1 to rewrite the
expected halves from the current output (then read the diff before committing it).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from lpdc.ir import parse
from lpdc.passes.instruments import IRDump, NumericCheck
from lpdc.passes.manager import PassManager

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = sorted(GOLDEN.glob("*.lpir"))
OUR_PASSES = {"canonicalize", "fold-constants", "dce", "cse", "fold-bn", "fuse-activation", "fuse-residual",
              "fold-pad", "simplify-transpose-reshape"}


def _read(path: Path) -> tuple[list[str], str, str]:
    text = path.read_text()
    head, _, rest = text.partition("\n")
    assert head.startswith("// RUN:"), f"{path.name}: first line must be '// RUN: pass1,pass2'"
    before, sep, after = rest.partition("// CHECK:")
    assert sep, f"{path.name}: missing '// CHECK:'"
    return [p.strip() for p in head[len("// RUN:"):].split(",")], before, after


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: Path) -> None:
    passes, before, after = _read(path)
    graph = parse(before, source=str(path))
    got = PassManager(passes, instruments=[NumericCheck(seed=3)]).run(graph)
    if os.environ.get("LPDC_UPDATE_GOLDEN"):
        path.write_text(path.read_text().partition("// CHECK:")[0] + "// CHECK:\n" + str(got))
        return
    expected = parse(after, source=f"{path} (expected)")
    assert str(got) == str(expected)
    assert str(got) != str(parse(before)), "a golden case must show a rewrite"


def test_every_pass_has_a_golden_case() -> None:
    covered = {p for path in CASES for p in _read(path)[0]}
    assert OUR_PASSES <= covered, OUR_PASSES - covered


def test_dump_ir_after_one_pass() -> None:
    """--dump-ir=after:fold-bn: the IR right after that pass, and nothing else."""
    _, before, _ = _read(GOLDEN / "fold-bn.lpir")
    dumps: list[tuple[str, str]] = []
    PassManager(["canonicalize", "fold-bn", "dce"], dump="after:fold-bn",
                dump_sink=lambda key, text: dumps.append((key, text))).run(parse(before))
    assert [k for k, _ in dumps] == ["after:fold-bn"]
    assert "batch_norm" not in dumps[0][1] and "conv(" in dumps[0][1]


def test_dump_ir_to_numbered_files(tmp_path: Path) -> None:
    _, before, _ = _read(GOLDEN / "fold-bn.lpir")
    dump = IRDump("before:all,after:all", directory=tmp_path)
    PassManager(["fold-bn", "dce"], instruments=[dump]).run(parse(before))
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["001_before_fold-bn.lpir", "002_after_fold-bn.lpir", "003_before_dce.lpir",
                     "004_after_dce.lpir"]
    assert "batch_norm" in (tmp_path / names[0]).read_text()
    assert "batch_norm" not in (tmp_path / names[1]).read_text()
    parse((tmp_path / names[3]).read_text())  # dumps are valid textual IR
