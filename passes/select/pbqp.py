"""PBQP solver: a pure function from a cost table to one choice per node.

Problem: each node u has a cost vector c_u (one entry per choice), each edge (u, v) a matrix
C_uv (|D_u| x |D_v|); pick x to minimise  sum_u c_u[x_u] + sum_(u,v) C_uv[x_u, x_v].
np.inf forbids a choice or a pair of choices.

Method (shared/notes/pbqp.md): normalise every edge (a row-plus-column matrix folds into the node
vectors and disappears), apply the exact reductions R0/RI/RII, and when only nodes of degree >= 3
remain, solve that core exactly by branch-and-bound if it has at most `exact_limit` nodes, else
decide its nodes heuristically (RN), reducing after each. Back-substitution recovers every
choice. `optimal` is True only when no heuristic decision was taken and the search (if any) ran
to completion within `search_budget`.

Preconditions: costs are finite or +inf (no NaN, no -inf); every edge's nodes have cost vectors.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import numpy as np

from ...errors import LpdcError
from .pbqp_reduce import BranchAndBound, ReducedGraph, Step, back_substitute

__all__ = ["PBQPError", "PBQPInfeasibleError", "PBQPProblem", "PBQPSolution", "evaluate", "solve"]

log = logging.getLogger(__name__)

# Irreducible cores up to this many nodes are searched exhaustively; bigger ones get RN.
DEFAULT_EXACT_LIMIT = 40
# Branch-and-bound states explored before giving up on a proof (the best found is still used).
# A complete 10-node graph with 4 choices needs a few hundred; a state costs ~0.1-0.4 ms.
DEFAULT_SEARCH_BUDGET = 1_000


class PBQPError(LpdcError, ValueError):
    """A malformed PBQP problem (bad shapes, NaN or -inf costs, unknown nodes)."""


class PBQPInfeasibleError(PBQPError):
    """No assignment has a finite cost (or none was found within the search budget)."""


@dataclass
class PBQPProblem:
    """Node cost vectors and edge cost matrices; edge (u, v) has shape |D_u| x |D_v|."""

    costs: dict[Hashable, np.ndarray] = field(default_factory=dict)
    edges: dict[tuple[Hashable, Hashable], np.ndarray] = field(default_factory=dict)


@dataclass(frozen=True)
class PBQPSolution:
    """One choice index per node; `cost` is recomputed from the original problem.

    `reductions` counts the steps on the winning path: R0, RI, RII, RN (heuristic decisions),
    BB (nodes fixed by exhaustive branching), plus `bb_states` (search states explored) and
    `folded` (edges dropped by normalisation).
    """

    choice: dict[Hashable, int]
    cost: float
    optimal: bool
    solve_seconds: float
    reductions: dict[str, int]


def _as_vector(key: Hashable, c: object) -> np.ndarray:
    vec = np.asarray(c, dtype=np.float64)
    if vec.ndim != 1 or vec.size == 0:
        raise PBQPError(f"cost vector must be 1-D and non-empty, got shape {vec.shape}", where=repr(key))
    _check_values(vec, repr(key))
    return vec


def _check_values(a: np.ndarray, where: str) -> None:
    if (a > -np.inf).all():  # fast path: False for NaN and -inf alike
        return
    if np.isnan(a).any():
        raise PBQPError("costs contain NaN", where=where)
    if np.isneginf(a).any():
        raise PBQPError("costs contain -inf (only +inf may forbid a choice)", where=where)


def _as_matrix(problem: PBQPProblem, u: Hashable, v: Hashable, m: object) -> np.ndarray:
    where = f"edge ({u!r}, {v!r})"
    for node in (u, v):
        if node not in problem.costs:
            raise PBQPError(f"node {node!r} has no cost vector", where=where)
    if u == v:
        raise PBQPError("self-loops are not allowed (fold the diagonal into the cost vector)", where=where)
    mat = np.asarray(m, dtype=np.float64)
    want = (len(problem.costs[u]), len(problem.costs[v]))
    if mat.shape != want:
        raise PBQPError(f"matrix shape {mat.shape} does not match |D_u| x |D_v| = {want}", where=where)
    _check_values(mat, where)
    return mat


def _build(problem: PBQPProblem) -> tuple[list[Hashable], ReducedGraph]:
    """Validate the problem and load it into a reduction graph with dense node ids."""
    keys = list(problem.costs)
    index = {k: i for i, k in enumerate(keys)}
    g = ReducedGraph([_as_vector(k, problem.costs[k]) for k in keys])
    merged: dict[tuple[int, int], np.ndarray] = {}
    for (u, v), m in problem.edges.items():
        mat = _as_matrix(problem, u, v, m)
        a, b = index[u], index[v]
        if a > b:  # parallel edges u-v and v-u become one matrix
            a, b, mat = b, a, mat.T
        merged[a, b] = merged[a, b] + mat if (a, b) in merged else mat
    for (a, b), mat in merged.items():
        g.set_edge(a, b, mat)
    g.seed_worklist()
    return keys, g


def _search_core(g: ReducedGraph, budget: int) -> tuple[bool, int]:
    """Branch-and-bound over g's irreducible core, reducing g completely.

    Returns (complete, states); complete means the result is provably optimal.
    """
    core = g.copy()
    core.stack, core.folded = [], 0  # the search returns only the core's steps
    bnb = BranchAndBound(budget + len(g.adj))  # + core size: the first (greedy) dive always ends
    best = bnb.search(core)
    if best is None:
        if bnb.complete:
            raise PBQPInfeasibleError("every assignment has infinite cost")
        raise PBQPInfeasibleError("no finite-cost assignment found within the search budget")
    g.stack += best.stack
    g.const, g.folded, g.cost, g.adj = best.const, g.folded + best.folded, {}, {}
    return bnb.complete, bnb.states


def _heuristic(g: ReducedGraph) -> None:
    """RN until nothing is left: decide the highest-degree node by its local costs, reduce, repeat."""
    while g.adj:
        u = g.pick()
        g.fix(u, int(np.argmin(g.local_costs(u))), "RN")
        g.reduce()


def solve(
    problem: PBQPProblem,
    *,
    exact_limit: int = DEFAULT_EXACT_LIMIT,
    search_budget: int = DEFAULT_SEARCH_BUDGET,
) -> PBQPSolution:
    """Minimise the PBQP objective; raises PBQPError on malformed input.

    exact_limit: an irreducible core with at most this many nodes is solved by branch-and-bound
    (0: never, pure RN heuristic). search_budget: branch-and-bound states before the search stops
    and reports optimal=False. Raises PBQPInfeasibleError if no finite assignment exists.
    """
    start = time.perf_counter()
    keys, g = _build(problem)
    g.reduce()
    optimal, states = True, 0
    if g.adj and len(g.adj) <= exact_limit:
        optimal, states = _search_core(g, search_budget)
    elif g.adj:
        # Too big to search. RN steps cost the proof, so no search afterwards either: it would
        # only polish the result, at many times the cost of the heuristic.
        snapshot = g.copy()
        _heuristic(g)
        optimal = False
        if not np.isfinite(g.const):  # RN walked into a forbidden corner: search after all
            g = snapshot
            optimal, states = _search_core(g, search_budget)
    if not np.isfinite(g.const):  # only exact reductions were used: a proof
        raise PBQPInfeasibleError("every assignment has infinite cost")
    x = back_substitute(g.stack, len(keys))
    choice = {k: x[i] for i, k in enumerate(keys)}
    reductions = _count(g.stack, states, g.folded)
    seconds = time.perf_counter() - start
    log.debug("pbqp: %d nodes in %.2f ms, optimal=%s, %s", len(keys), 1e3 * seconds, optimal, reductions)
    return PBQPSolution(choice, evaluate(problem, choice), optimal, seconds, reductions)


def _count(stack: list[Step], states: int, folded: int) -> dict[str, int]:
    counts = Counter(step[0] for step in stack)
    out = {kind: counts.get(kind, 0) for kind in ("R0", "RI", "RII", "RN", "BB")}
    out["bb_states"], out["folded"] = states, folded
    return out


def evaluate(problem: PBQPProblem, choice: Mapping[Hashable, int]) -> float:
    """Total cost of an assignment (inf if it takes a forbidden choice or pair)."""
    total = 0.0
    for u, c in problem.costs.items():
        if u not in choice:
            raise PBQPError("assignment has no choice for this node", where=repr(u))
        vec = np.asarray(c, dtype=np.float64)
        if not 0 <= choice[u] < len(vec):
            raise PBQPError(f"choice {choice[u]} out of range 0..{len(vec) - 1}", where=repr(u))
        total += float(vec[choice[u]])
    for (u, v), m in problem.edges.items():
        total += float(np.asarray(m, dtype=np.float64)[choice[u], choice[v]])
    return total
