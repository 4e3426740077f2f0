"""Progress bars of `lpdc compile` / `lpdc run`: one tick per pass, and only on a terminal.

The bars go to stderr through tqdm's `disable=None` (drawn only when stderr is a TTY): a piped
stderr (tests, CI, `2> log`) stays clean, a pseudo-terminal shows them unless --no-progress.
"""

from __future__ import annotations

import io
import os
import select
import subprocess
import sys

import pytest
from lpdc.passes.instruments import PassProgress
from lpdc.passes.manager import PassManager, pipeline
from lpdc.tools.cli import build_parser, pass_bar, progress_mode
from lpdc.tools.zoo import build

COMPILE = [sys.executable, "-m", "lpdc.tools.cli", "compile", "zoo:tiny_cnn", "--target", "numpy"]
BAR_MARKS = ("\r", "passes", "%|", "\x1b[")  # tqdm redraws with a carriage return and names the bar


def test_instrument_reports_every_pass_in_order():
    started, done = [], []
    inst = PassProgress(on_done=done.append, on_start=started.append)
    PassManager(pipeline(2), instruments=[inst]).run(build("tiny_cnn"))
    assert started == done == pipeline(2) and inst.done == len(pipeline(2))


def test_pass_bar_ticks_once_per_pass_when_forced():
    out = io.StringIO()
    inst, bar = pass_bar(len(pipeline(2)), enabled=True, file=out)
    PassManager(pipeline(2), instruments=[inst]).run(build("tiny_cnn"))
    assert bar.n == bar.total == len(pipeline(2)) and "passes" in out.getvalue()


def test_pass_bar_stays_silent_off_a_terminal():
    out = io.StringIO()  # not a TTY: tqdm's disable=None turns the bar off
    inst, bar = pass_bar(len(pipeline(2)), enabled=None, file=out)
    PassManager(pipeline(2), instruments=[inst]).run(build("tiny_cnn"))
    bar.close()
    assert bar.disable and out.getvalue() == "" and inst.done == len(pipeline(2))


def test_flags_turn_bars_off():
    p = build_parser()
    assert progress_mode(p.parse_args(["compile", "zoo:tiny_cnn"])) is None
    assert progress_mode(p.parse_args(["compile", "zoo:tiny_cnn", "--no-progress"])) is False
    assert progress_mode(p.parse_args(["run", "zoo:tiny_cnn", "--no-progress"])) is False
    assert progress_mode(p.parse_args(["run", "zoo:tiny_cnn", "--json"])) is False


def test_piped_stderr_gets_no_bar():
    r = subprocess.run(COMPILE, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "compiled for numpy" in r.stdout
    assert not any(m in r.stderr for m in BAR_MARKS), r.stderr


def _stderr_on_pty(argv: list[str]) -> str:
    """Run `argv` with stderr on a pseudo-terminal (24x100: tqdm draws nothing 0 columns wide)."""
    pty = pytest.importorskip("pty")
    import fcntl
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    proc.communicate(timeout=120)
    os.close(master)
    assert proc.returncode == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_terminal_gets_a_bar_unless_no_progress():
    shown = _stderr_on_pty(COMPILE)
    assert "passes:" in shown and "fuse-activation" in shown  # the bar names the pass running
    assert f"{len(pipeline(2)) - 1}/{len(pipeline(2))}" in shown  # ticks up to the last pass
    assert not any(m in _stderr_on_pty(COMPILE + ["--no-progress"]) for m in BAR_MARKS)
