"""The README's two fresh-machine commands are exactly what CI runs (.ci/run runs them verbatim in a
brand-new virtual environment, which is the real proof that they work on a new machine)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list[str]:
    blocks = re.findall(r"```sh\n(.*?)\n```", (ROOT / "README.md").read_text(), re.S)
    return [b.strip() for b in blocks[:2]]


def test_readme_opens_with_two_commands_that_ci_runs_verbatim():
    run, test = _readme_commands()
    assert "pip install ." in run and "lpdc run default" in run
    assert 'pip install -e ".[test]"' in test and "pytest" in test
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert run in ci and test in ci
    assert ci.index(test) > ci.index(run)
