"""select-primitives: choose every layer's primitive and layout by PBQP, then apply the plan.

Before: a graph in the default layout, every conv run by the reference im2col.
After:  each conv / fully_connected node names its primitive (`primitive` attribute), values
        carry their chosen layout (shapes permuted), layout_convert nodes sit where layouts
        change; graph inputs and outputs stay NCHW.
Preconditions: no plan yet (a graph with primitive attributes, layout_convert nodes or
        non-default layouts is left as it is). Best after O2's folding and fusion, so that
        biases, batch-norms and activations already sit in the conv epilogues.
Formula: minimise  sum_u time(u, x_u) + sum_(p,u) convert(p -> u; x_p, x_u)  (see build.py).

Options live in `SelectConfig`; `select_config(...)` sets them for the passes run inside it
(the pass manager calls passes with the graph only):

    with select_config(costs="model", on_plan=plans.append):
        exe = lpdc.compile(g, opt_level=3)

costs: "auto" (measure on the host NumPy device, keeping measurements in the cost cache; the
model elsewhere; $LPDC_SELECT_COSTS overrides), "measure", "cache" (cached measurements only),
"model" (analytical only). strategy: "pbqp", or "greedy" (each layer's fastest choice, ignoring
conversions, glue ops following their producer; a baseline). only: restrict conv primitives to a
set (falling back to all that apply when none of the set does).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ...backends.target import DEVICES, Device
from ...errors import LpdcPassError
from ...ir import Graph
from ..manager import register_pass
from .apply import apply_plan
from .build import Selection, build_problem, key_of
from .choices import DEFAULT_LAYOUT, is_activation
from .costs import CostCache, CostSource
from .measure import blas_threads, cpu_clock
from .pbqp import PBQPError, evaluate, solve
from .plan import Plan, layer_plans
from .pricing import Pricer

log = logging.getLogger(__name__)
COST_MODES = ("auto", "measure", "cache", "model")


@dataclass(frozen=True)
class SelectConfig:
    """Options of select-primitives (see the module docstring)."""

    device: str = "numpy"
    costs: str = "auto"
    cache_path: str | Path | None = None
    source: CostSource | None = None  # replaces the cache file (e.g. the autotuner's database)
    strategy: str = "pbqp"
    only: frozenset[str] | None = None
    max_workspace: int | None = None
    budget_s: float = 0.05  # benchmark time per (layer, choice)
    on_plan: Callable[[Plan], None] | None = None


_CONFIG: ContextVar[SelectConfig | None] = ContextVar("lpdc_select_config", default=None)


def current_config() -> SelectConfig:
    """The options in force (defaults outside any `select_config` block)."""
    return _CONFIG.get() or SelectConfig()


@contextlib.contextmanager
def select_config(**options) -> Iterator[SelectConfig]:
    """Run the enclosed compilations with these SelectConfig options."""
    config = replace(current_config(), **options)
    token = _CONFIG.set(config)
    try:
        yield config
    finally:
        _CONFIG.reset(token)


def _device(name: str) -> Device:
    if name not in DEVICES:
        raise LpdcPassError(f"unknown device {name!r} for primitive selection; known: {', '.join(DEVICES)}")
    return DEVICES[name]


def make_pricer(config: SelectConfig) -> Pricer:
    """The Pricer for a configuration: cost source, measuring on or off."""
    device = _device(config.device)
    mode = os.environ.get("LPDC_SELECT_COSTS", config.costs) if config.costs == "auto" else config.costs
    if mode not in COST_MODES:
        raise LpdcPassError(f"unknown cost mode {mode!r}; known: {', '.join(COST_MODES)}")
    host = device.backend == "numpy"
    if mode == "model":
        return Pricer(device, label=f"{device.name} (model)")
    source = config.source
    key = f"{device.name}/blas{blas_threads()}" if host else device.name
    if source is None and config.cache_path is not None and Path(config.cache_path).suffix in (".db", ".sqlite"):
        from ...autotune.db import DatabaseCostSource  # the autotuner's SQLite database (lpdc tune --db)

        source = DatabaseCostSource.for_host(config.cache_path, device.name)
    if source is None:
        source = CostCache(config.cache_path, key)
    measuring = host and mode in ("auto", "measure")
    label = f"{key if config.source is None else device.name} ({'measured' if measuring else 'cached'})"
    return Pricer(device, source, measure=measuring, budget_s=config.budget_s, label=label, clock=cpu_clock())


def _already_planned(graph: Graph) -> bool:
    """A graph with primitives, conversions or non-default layouts already carries a plan."""
    return any(n.op == "layout_convert" or n.attrs.get("primitive") for n in graph.nodes) or any(
        v.type.rank >= 4 and v.type.layout not in (None, DEFAULT_LAYOUT) for v in graph.values())


def _greedy(sel: Selection) -> dict[str, int]:
    """Each conv/fc its fastest choice; other nodes follow their first activation's producer."""
    choice: dict[str, int] = {}
    for key, entry in sel.entries.items():
        if entry.node.op in ("conv", "fully_connected") or len(entry.choices) == 1:
            choice[key] = int(np.argmin(entry.costs))
            continue
        follow = DEFAULT_LAYOUT
        for i in entry.data:
            producer = entry.node.inputs[i].producer
            if producer is not None and producer.op != "const" and is_activation(producer.outputs[0].type):
                src = sel.entries[key_of(producer)]
                follow = src.choices[choice[src.key]].layout
                break
        layouts = [c.layout for c in entry.choices]
        choice[key] = layouts.index(follow) if follow in layouts else int(np.argmin(entry.costs))
    return choice


def _solve(sel: Selection, strategy: str) -> tuple[dict[str, int], float, float, bool, dict[str, int]]:
    """(choice, cost, solve seconds, provably optimal, reductions) by `strategy`."""
    if strategy == "greedy":
        choice = _greedy(sel)
        return choice, evaluate(sel.problem, choice), 0.0, False, {}
    if strategy != "pbqp":
        raise LpdcPassError(f"unknown selection strategy {strategy!r} (pbqp or greedy)")
    try:
        sol = solve(sel.problem)
    except PBQPError as e:
        raise LpdcPassError(f"primitive selection has no feasible plan: {e}", where=f"graph @{sel.graph.name}") from e
    return sol.choice, sol.cost, sol.solve_seconds, sol.optimal, dict(sol.reductions)


def select(graph: Graph, config: SelectConfig | None = None) -> tuple[Graph, Plan | None]:
    """Choose and apply a plan to `graph` in place; returns the graph and the plan (None if skipped)."""
    config = config or current_config()
    if _already_planned(graph):
        log.info("select-primitives: @%s already has layouts chosen; left unchanged", graph.name)
        return graph, None
    graph.toposort()
    pricer = make_pricer(config)
    sel = build_problem(graph, pricer, config.only, config.max_workspace)
    choice, cost, seconds, optimal, reductions = _solve(sel, config.strategy)
    layers = layer_plans(sel, choice)
    conversions = apply_plan(sel, choice)
    pricer.save()
    plan = Plan(graph.name, config.strategy, pricer.label, layers, conversions, cost, seconds, optimal,
                reductions, len(sel.problem.costs), len(sel.problem.edges), dict(pricer.origins))
    log.info("select-primitives: @%s %d nodes, cost %.3f ms, solve %.2f ms, optimal=%s, %d conversions",
             graph.name, len(sel.entries), cost * 1e3, seconds * 1e3, optimal, len(conversions))
    if config.on_plan is not None:
        config.on_plan(plan)
    return graph, plan


@register_pass("select-primitives")
def select_primitives(graph: Graph) -> Graph:
    """Choose primitive x layout per node by PBQP and apply the plan (module docstring)."""
    return select(graph)[0]


__all__ = ["COST_MODES", "SelectConfig", "current_config", "select", "select_config",
           "select_primitives"]
