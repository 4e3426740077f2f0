"""The pass registry, the named pipelines and the PassManager.

A pass is a function `Graph -> Graph` registered under a name; it may edit the graph in place and
return it. The manager runs a list of passes, verifies after each, records wall time and node
counts, and hands the graph to *instruments* before and after every pass (IR dumps, the
NumericCheck differential test; see passes/instruments.py). Any failure inside a pass, or a
graph it leaves invalid, is re-raised as `PassError` naming the pass and the passes before it.

Pipelines by opt level:
    O0  nothing
    O1  canonical clean-ups: canonicalize, simplify-transpose-reshape, fold-constants, cse, dce
    O2  O1 + folding and fusion: fold-bn, fold-pad, fuse-residual, fuse-activation, cse, dce
    O3  O2 + layout/primitive selection ("select-primitives", once a module registers it)

Writing a pass: copy passes/fold_pad.py (or dce.py for the smallest one) to passes/<name>.py,
keep the Before / After / Preconditions / Formula docstring, write one rule
`fn(graph, node) -> bool` with the helpers of pattern.py (matching) and rewrite.py (rewriting),
and register `@register_pass("<name-with-dashes>")`; the module is found automatically. Test it
with a tests/golden/<case>.lpir file and `lpdc opt MODEL -p <name> --check-numerics`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from ..errors import LpdcError, LpdcPassError
from ..ir import Graph

log = logging.getLogger(__name__)
PassFn = Callable[[Graph], Graph]
PASSES: dict[str, PassFn] = {}

_O1 = ["canonicalize", "simplify-transpose-reshape", "fold-constants", "cse", "dce"]
# fold-bn before the fusions: a BN folds only into a conv whose epilogue is still empty, and a
# residual add fuses only into a conv without an activation yet, so fuse-residual comes before
# fuse-activation (which then fuses the ReLU after the add into the conv too).
_O2 = _O1 + ["fold-bn", "fold-pad", "fuse-residual", "fuse-activation", "cse", "dce"]
PIPELINES: dict[str, list[str]] = {"O0": [], "O1": list(_O1), "O2": list(_O2), "O3": list(_O2)}
# Passes other modules provide; a level includes them only once they are registered.
LATE_PASSES: dict[str, list[str]] = {"O3": ["select-primitives"]}


def register_pass(name: str) -> Callable[[PassFn], PassFn]:
    """Register `fn` as the pass `name` (kebab-case, like the file name with dashes)."""

    def deco(fn: PassFn) -> PassFn:
        if name in PASSES:
            raise ValueError(f"pass {name!r} registered twice")
        PASSES[name] = fn
        return fn

    return deco


def get_pass(name: str) -> PassFn:
    _load()
    if name not in PASSES:
        import difflib

        near = difflib.get_close_matches(name, list(PASSES), n=3)
        broken = "".join(f"; module {m} failed to import ({err})" for m, err in sorted(LOAD_ERRORS.items()))
        raise LpdcPassError(f"unknown pass {name!r}" + (f" (did you mean {', '.join(near)}?)" if near else "")
                            + f"; known: {', '.join(sorted(PASSES))}" + broken)
    return PASSES[name]


def pipeline(opt_level: int | str) -> list[str]:
    """The pass names of an opt level (0-3 or 'O0'-'O3')."""
    _load()
    key = opt_level if isinstance(opt_level, str) else f"O{opt_level}"
    if key not in PIPELINES:
        raise LpdcPassError(f"unknown opt level {opt_level!r}; known: {', '.join(PIPELINES)}")
    names = list(PIPELINES[key])
    names += [n for n in LATE_PASSES.get(key, []) if n in PASSES and n not in names]
    return names


# Pass modules that failed to import, with the error: reported when a pass is not found, so one
# broken module costs only its own passes.
LOAD_ERRORS: dict[str, str] = {}


def _load() -> None:
    import importlib
    import pkgutil

    from .. import passes

    for mod in pkgutil.iter_modules(passes.__path__):
        name = f"{passes.__name__}.{mod.name}"
        if mod.name == "manager" or mod.name in LOAD_ERRORS:
            continue
        try:
            importlib.import_module(name)
        except Exception as e:  # keep the other passes usable; say why this one is missing
            LOAD_ERRORS[mod.name] = f"{type(e).__name__}: {e}"
            log.warning("pass module %s failed to import: %s", name, LOAD_ERRORS[mod.name])


class PassError(LpdcPassError):
    """A pass failed; `pass_name` is the pass, `earlier` the passes that ran before it."""

    def __init__(self, pass_name: str, earlier: Sequence[str], detail: str) -> None:
        self.pass_name = pass_name
        self.earlier = tuple(earlier)
        after = ", ".join(self.earlier) or "no earlier passes"
        super().__init__(f"failed (after {after}): {detail}", where=f"pass '{pass_name}'")


def pass_error(name: str, earlier: Sequence[str], cause: BaseException) -> PassError:
    """Wrap `cause` as a PassError of pass `name` (an error already naming that pass is kept)."""
    if isinstance(cause, PassError) and cause.pass_name == name:
        return cause
    detail = str(cause) if isinstance(cause, LpdcError) else f"{type(cause).__name__}: {cause}"
    return PassError(name, earlier, detail)


class Instrument(Protocol):
    """Sees the graph before and after every pass; may raise to stop the pipeline."""

    def before_pass(self, name: str, graph: Graph) -> None: ...

    def after_pass(self, name: str, graph: Graph) -> None: ...


@dataclass
class PassRecord:
    """What one pass did: its time and the node count before and after."""

    name: str
    seconds: float
    nodes_before: int
    nodes_after: int


@dataclass
class PassManager:
    """Runs passes in order, verifying after each.

    `dump` holds keys 'before:NAME' / 'after:NAME' / 'after:all' (or one comma-separated string,
    as `--dump-ir=after:fold-bn`); the textual IR at those points goes to `dump_sink(key, text)`
    or the log. `instruments` see every pass (e.g. `NumericCheck()`).
    """

    names: Sequence[str]
    verify: bool = True
    dump: Sequence[str] | str = ()
    dump_sink: Callable[[str, str], None] | None = None
    instruments: Sequence[Instrument] = ()
    records: list[PassRecord] = field(default_factory=list)

    def run(self, graph: Graph) -> Graph:
        fns = [(n, get_pass(n)) for n in self.names]  # unknown names fail before anything runs
        instruments = list(self.instruments)
        if self.dump:
            from .instruments import IRDump

            instruments.insert(0, IRDump(self.dump, self.dump_sink))
        done: list[str] = []
        for name, fn in fns:
            graph = self._run_one(name, fn, graph, instruments, done)
            done.append(name)
        return graph

    def _run_one(self, name: str, fn: PassFn, graph: Graph, instruments: list[Instrument],
                 done: list[str]) -> Graph:
        before = len(graph.nodes)
        try:
            for inst in instruments:
                inst.before_pass(name, graph)
            t0 = time.perf_counter()
            result = fn(graph)
            if not isinstance(result, Graph):
                raise LpdcPassError(f"returned {type(result).__name__}, not a Graph")
            if self.verify:
                result.verify()
            seconds = time.perf_counter() - t0
            for inst in instruments:
                inst.after_pass(name, result)
        except Exception as e:  # a pass bug is reported like any pass failure, with the pass named
            raise pass_error(name, done, e) from e
        self.records.append(PassRecord(name, seconds, before, len(result.nodes)))
        log.debug("pass %s: %.1f ms, %d -> %d nodes", name, seconds * 1e3, before, len(result.nodes))
        return result
