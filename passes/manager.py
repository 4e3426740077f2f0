"""The pass registry and the PassManager.

A pass is a function `Graph -> Graph` registered under a name; it may edit the graph in place and
return it. The manager runs a list of passes, verifies after each, records wall time and node
counts, and can dump the textual IR before/after chosen passes. Named pipelines (O0-O3) are lists
of pass names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ..errors import LpdcError, LpdcPassError
from ..ir import Graph

log = logging.getLogger(__name__)
PassFn = Callable[[Graph], Graph]
PASSES: dict[str, PassFn] = {}

# Pipelines by opt level; pass files add themselves to the levels they belong to.
PIPELINES: dict[str, list[str]] = {"O0": [], "O1": [], "O2": [], "O3": []}


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
        raise LpdcPassError(f"unknown pass {name!r}" + (f" (did you mean {', '.join(near)}?)" if near else "")
                            + f"; known: {', '.join(sorted(PASSES))}")
    return PASSES[name]


def pipeline(opt_level: int | str) -> list[str]:
    """The pass names of an opt level (0-3 or 'O0'-'O3')."""
    _load()
    key = opt_level if isinstance(opt_level, str) else f"O{opt_level}"
    if key not in PIPELINES:
        raise LpdcPassError(f"unknown opt level {opt_level!r}; known: {', '.join(PIPELINES)}")
    return list(PIPELINES[key])


def _load() -> None:
    import importlib
    import pkgutil

    from .. import passes

    for mod in pkgutil.iter_modules(passes.__path__):
        if mod.name not in ("manager",):
            importlib.import_module(f"{passes.__name__}.{mod.name}")


@dataclass
class PassRecord:
    """What one pass did: its time and the node count before and after."""

    name: str
    seconds: float
    nodes_before: int
    nodes_after: int


@dataclass
class PassManager:
    """Runs passes in order, verifying after each; `dump` maps 'before:NAME'/'after:NAME' to a sink."""

    names: Sequence[str]
    verify: bool = True
    dump: Sequence[str] = ()
    dump_sink: Callable[[str, str], None] | None = None
    records: list[PassRecord] = field(default_factory=list)

    def run(self, graph: Graph) -> Graph:
        fns = [(n, get_pass(n)) for n in self.names]
        done: list[str] = []
        for name, fn in fns:
            self._dump(f"before:{name}", graph)
            before = len(graph.nodes)
            t0 = time.perf_counter()
            try:
                graph = fn(graph)
                if self.verify:
                    graph.verify()
            except LpdcError as e:
                raise LpdcPassError(f"pass '{name}' failed (after {', '.join(done) or 'no passes'}): {e}") from e
            self.records.append(PassRecord(name, time.perf_counter() - t0, before, len(graph.nodes)))
            log.debug("pass %s: %.1f ms, %d -> %d nodes", name, self.records[-1].seconds * 1e3, before, len(graph.nodes))
            done.append(name)
            self._dump(f"after:{name}", graph)
        return graph

    def _dump(self, key: str, graph: Graph) -> None:
        if key in self.dump or key.split(":")[0] + ":all" in self.dump:
            text = str(graph)
            if self.dump_sink is not None:
                self.dump_sink(key, text)
            else:
                log.info("IR %s\n%s", key, text)
