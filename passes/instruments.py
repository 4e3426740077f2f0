"""PassManager instruments: code that watches passes run, kept out of the passes themselves.

- `IRDump`: the textual IR before/after chosen passes (`--dump-ir=after:fold-bn`), to a sink,
  a directory of `NNN_after_fold-bn.lpir` files, or the log.
- `PassProgress`: each pass's start and end, to callbacks (the CLI draws a tqdm bar with them).
- `NumericCheck`: differential testing while developing a pass. It runs the NumPy reference on
  the graph before the first pass and after every pass (on given or seeded random inputs) and
  raises `PassError` naming the first pass whose outputs drift beyond
  `rtol * max|reference| + atol`.

    PassManager(["fold-bn", "fuse-activation"], instruments=[NumericCheck()]).run(g)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..ir import Graph, random_inputs
from .manager import PassError

log = logging.getLogger(__name__)


def run_reference(graph: Graph, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph's outputs on the NumPy reference interpreter."""
    from ..backends.numpy import compile_numpy

    return compile_numpy(graph).run(inputs)


def max_drift(ref: np.ndarray, got: np.ndarray) -> float:
    """Largest |ref - got| over finite entries; inf where the two disagree on NaN/inf positions."""
    ref64, got64 = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    if ref64.shape != got64.shape:
        return float("inf")
    finite = np.isfinite(ref64)
    same_special = (~finite & ((ref64 == got64) | (np.isnan(ref64) & np.isnan(got64)))) | finite
    if not same_special.all() or not np.isfinite(got64[finite]).all():
        return float("inf")
    return float(np.abs(ref64[finite] - got64[finite]).max(initial=0.0))


def compare_outputs(ref: Mapping[str, np.ndarray], got: Mapping[str, np.ndarray], rtol: float = 1e-4,
                    atol: float = 1e-6) -> str | None:
    """None when `got` matches `ref` output by output, else a message naming the first difference."""
    if list(ref) != list(got):
        return f"outputs changed from {list(ref)} to {list(got)}"
    for name, r in ref.items():
        scale = float(np.abs(np.asarray(r, np.float64)[np.isfinite(r)]).max(initial=0.0))
        err, tol = max_drift(r, got[name]), rtol * scale + atol
        if not err <= tol:
            return f"output %{name} drifted: max |difference| {err:.3g} > tolerance {tol:.3g}"
    return None


@dataclass
class NumericCheck:
    """Run the reference before the pipeline and after each pass; fail the pass that changes outputs."""

    inputs: Mapping[str, np.ndarray] | None = None
    seed: int = 0
    rtol: float = 1e-4  # relative to the largest |reference output|, per output
    atol: float = 1e-6  # floor for outputs that are all ~0
    reference: dict[str, np.ndarray] | None = field(default=None, init=False)
    checked: list[str] = field(default_factory=list, init=False)

    def before_pass(self, name: str, graph: Graph) -> None:
        if self.reference is None:
            if self.inputs is None:
                self.inputs = random_inputs(graph, self.seed)
            self.reference = run_reference(graph, self.inputs)

    def after_pass(self, name: str, graph: Graph) -> None:
        assert self.reference is not None and self.inputs is not None
        problem = compare_outputs(self.reference, run_reference(graph, self.inputs), self.rtol, self.atol)
        if problem is not None:
            raise PassError(name, self.checked, f"numeric check: {problem}")
        self.checked.append(name)


@dataclass
class PassProgress:
    """Reports every pass to callbacks: `on_start(name)` before it runs, `on_done(name)` after.

    Library code never draws; the command line turns these calls into a progress bar.
    """

    on_done: Callable[[str], None]
    on_start: Callable[[str], None] | None = None
    done: int = field(default=0, init=False)

    def before_pass(self, name: str, graph: Graph) -> None:
        if self.on_start is not None:
            self.on_start(name)

    def after_pass(self, name: str, graph: Graph) -> None:
        self.done += 1
        self.on_done(name)


@dataclass
class IRDump:
    """Textual IR at the keys asked for: 'before:NAME', 'after:NAME', 'before:all', 'after:all'."""

    keys: Sequence[str] | str
    sink: Callable[[str, str], None] | None = None
    directory: str | Path | None = None
    count: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if isinstance(self.keys, str):
            self.keys = [k.strip() for k in self.keys.split(",") if k.strip()]

    def before_pass(self, name: str, graph: Graph) -> None:
        self._dump("before", name, graph)

    def after_pass(self, name: str, graph: Graph) -> None:
        self._dump("after", name, graph)

    def _dump(self, when: str, name: str, graph: Graph) -> None:
        key = f"{when}:{name}"
        if key not in self.keys and f"{when}:all" not in self.keys:
            return
        self.count += 1
        text = str(graph)
        if self.directory is not None:
            path = Path(self.directory)
            path.mkdir(parents=True, exist_ok=True)
            (path / f"{self.count:03d}_{when}_{name}.lpir").write_text(text)
        if self.sink is not None:
            self.sink(key, text)
        elif self.directory is None:
            log.info("IR %s\n%s", key, text)
