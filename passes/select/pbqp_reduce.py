"""The PBQP reduction engine behind `pbqp.solve`: R0/RI/RII, RN, edge normalisation, branch-and-bound.

Nodes are dense ints here; `pbqp.py` maps the user's hashable keys onto them and back.

Formula (Scholz & Eckstein; see shared/notes/pbqp.md), for node u with vector c_u and edges C_uv:
    R0   deg 0:  x_u = argmin c_u
    RI   deg 1:  c_v[j]   += min_i c_u[i] + C_uv[i, j]
    RII  deg 2:  C_vw[j,k] += min_i c_u[i] + C_uv[i, j] + C_uw[i, k]
    RN   deg>=3: fix x_u to its best local choice (heuristic), fold row C_uv[x_u, :] into c_v
Every reduction pushes a record on `stack`; back-substitution replays it in reverse.

Infinite costs forbid a choice. Costs only ever grow by `+`, and no -inf is admitted, so inf-inf
(NaN) can only arise in normalisation, which masks forbidden rows and columns out first.
"""

from __future__ import annotations

import math

import numpy as np

# (kind, node, neighbours, data): data is the chosen index (R0/RN/BB) or the argmin table (RI/RII).
Step = tuple[str, int, tuple[int, ...], "int | np.ndarray"]

# Relative tolerance under which a normalised edge counts as zero and is dropped.
_ZERO_RTOL = 1e-10


def normalise(m: np.ndarray, cu: np.ndarray, cv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Split m into row vector + column vector + a residual with zero row and column minima.

    Returns (add_u, add_v, rest); rest is None when the edge is a pure row+column sum and can be
    dropped. Rows of forbidden u choices and columns of forbidden v choices are "don't care": they
    are left out of the minima and zeroed in the residual, which lets more edges vanish.
    """
    orig = m
    fu, fv = np.isfinite(cu), np.isfinite(cv)
    if not (fu.all() and fv.all()):
        m = np.where(fu[:, None] & fv[None, :], m, np.inf)
    add_u = m.min(axis=1)  # inf where every partner is forbidden: that u choice is forbidden
    fu &= np.isfinite(add_u)
    m = m - (add_u if fu.all() else np.where(fu, add_u, 0.0))[:, None]
    add_v = m.min(axis=0)
    fv &= np.isfinite(add_v)
    m = m - (add_v if fv.all() else np.where(fv, add_v, 0.0))[None, :]
    if not (fu.all() and fv.all()):
        m = np.where(fu[:, None] & fv[None, :], m, 0.0)
    worst = np.abs(m).max()  # inf if some allowed pair is forbidden: never separable
    if worst == 0.0 or (worst < np.inf and worst <= _ZERO_RTOL * _finite_absmax(orig)):
        return add_u, add_v, None
    return add_u, add_v, m


def _finite_absmax(m: np.ndarray) -> float:
    return float(np.abs(np.where(np.isfinite(m), m, 0.0)).max())


class ReducedGraph:
    """A PBQP instance being reduced in place; cheap to copy for branch-and-bound.

    Arrays are never mutated in place (always replaced), so copies share them safely.
    """

    __slots__ = ("cost", "adj", "const", "stack", "work", "folded")

    def __init__(self, costs: list[np.ndarray]) -> None:
        self.cost: dict[int, np.ndarray] = dict(enumerate(costs))
        self.adj: dict[int, dict[int, np.ndarray]] = {u: {} for u in self.cost}
        self.const = 0.0  # cost already committed by removed nodes
        self.stack: list[Step] = []
        self.work: list[int] = []  # nodes of degree <= 2 (degrees never grow, so never stale)
        self.folded = 0  # edges dropped by normalisation

    def copy(self) -> ReducedGraph:
        g = ReducedGraph.__new__(ReducedGraph)
        g.cost = dict(self.cost)
        g.adj = {u: dict(nbrs) for u, nbrs in self.adj.items()}
        g.const, g.stack, g.work, g.folded = self.const, list(self.stack), list(self.work), self.folded
        return g

    def seed_worklist(self) -> None:
        """Queue every reducible node, lowest id popped first (for determinism)."""
        self.work = sorted((u for u, n in self.adj.items() if len(n) <= 2), reverse=True)

    # -- edge and vector updates -------------------------------------------------------------

    def set_edge(self, u: int, v: int, m: np.ndarray) -> None:
        """Store m (|D_u| x |D_v|) as the u-v edge after normalising it, or drop it if separable."""
        add_u, add_v, rest = normalise(m, self.cost[u], self.cost[v])
        if rest is None:
            if v in self.adj[u]:
                del self.adj[u][v], self.adj[v][u]
                self._touch(u)
                self._touch(v)
            self.folded += 1
        else:
            self.adj[u][v], self.adj[v][u] = rest, rest.T
        self.add_cost(u, add_u)
        self.add_cost(v, add_v)

    def add_cost(self, u: int, vec: np.ndarray) -> None:
        old = self.cost[u]
        new = old + vec
        self.cost[u] = new
        # Newly forbidden choices turn rows into "don't care", which may make u's edges separable.
        if not np.isfinite(vec).all() and np.count_nonzero(new == np.inf) > np.count_nonzero(old == np.inf):
            for v in list(self.adj[u]):
                if v in self.adj[u]:
                    self.set_edge(u, v, self.adj[u][v])

    def _touch(self, u: int) -> None:
        if u in self.adj and len(self.adj[u]) <= 2:
            self.work.append(u)

    def _remove(self, u: int) -> None:
        for v in self.adj.pop(u):
            del self.adj[v][u]
            self._touch(v)
        del self.cost[u]

    # -- reductions ----------------------------------------------------------------------------

    def reduce(self) -> None:
        """Apply R0/RI/RII until the graph is empty or every node has degree >= 3."""
        while self.work:
            u = self.work.pop()
            if u not in self.adj:
                continue
            deg = len(self.adj[u])
            if deg == 0:
                self.fix(u, int(np.argmin(self.cost[u])), "R0")
            elif deg == 1:
                self._r1(u)
            elif deg == 2:
                self._r2(u)

    def _r1(self, u: int) -> None:
        ((v, m),) = self.adj[u].items()
        t = self.cost[u][:, None] + m
        best = t.argmin(axis=0)
        self._remove(u)
        self.stack.append(("RI", u, (v,), best))
        self.add_cost(v, t[best, np.arange(t.shape[1])])

    def _r2(self, u: int) -> None:
        (v, mv), (w, mw) = self.adj[u].items()
        t = self.cost[u][:, None, None] + mv[:, :, None] + mw[:, None, :]
        best, delta = t.argmin(axis=0), t.min(axis=0)
        self._remove(u)
        self.stack.append(("RII", u, (v, w), best))
        old = self.adj[v].get(w)
        self.set_edge(v, w, delta if old is None else old + delta)

    def fix(self, u: int, i: int, kind: str) -> None:
        """Commit x_u = i: pay c_u[i], fold row i of each edge into the neighbour, remove u."""
        self.const += float(self.cost[u][i])
        rows = [(v, m[i]) for v, m in self.adj[u].items()]
        self._remove(u)
        self.stack.append((kind, u, (), i))
        for v, row in rows:
            self.add_cost(v, row)

    # -- heuristics and bounds -----------------------------------------------------------------

    def pick(self) -> int:
        """The node to decide heuristically: highest degree (fixing it lowers the most degrees)."""
        return max(self.adj, key=lambda u: (len(self.adj[u]), -u))

    def local_costs(self, u: int) -> np.ndarray:
        """Per choice of u: c_u plus, for each neighbour, its best reply; exact if u were a star."""
        tot = self.cost[u]
        for v, m in self.adj[u].items():
            tot = tot + (m + self.cost[v][None, :]).min(axis=1)
        return tot

    def lower_bound(self) -> float:
        """A lower bound on the remaining cost (valid for negative node costs too).

        Each node's vector is shared equally among its edges; the objective is then a sum of
        per-edge terms, each at least its own minimum. Normalised edges are >= 0, so
        sum_u min c_u is a bound too; take the larger.
        """
        plain = sum(float(c.min()) for c in self.cost.values())
        split = 0.0
        for u, nbrs in self.adj.items():
            if not nbrs:
                split += float(self.cost[u].min())
                continue
            cu = self.cost[u] / len(nbrs)
            for v, m in nbrs.items():
                if u < v:
                    split += float((cu[:, None] + m + (self.cost[v] / len(self.adj[v]))[None, :]).min())
        return self.const + max(plain, split)


def components(g: ReducedGraph) -> list[list[int]]:
    """Connected components of the remaining graph, each sorted, in order of their lowest node."""
    seen: set[int] = set()
    out = []
    for root in sorted(g.adj):
        if root in seen:
            continue
        seen.add(root)
        comp, frontier = [root], [root]
        while frontier:
            for v in g.adj[frontier.pop()]:
                if v not in seen:
                    seen.add(v)
                    comp.append(v)
                    frontier.append(v)
        out.append(sorted(comp))
    return out


def subgraph(g: ReducedGraph, nodes: list[int]) -> ReducedGraph:
    """A connected component of g as a graph of its own, with nothing committed yet."""
    h = ReducedGraph([])
    h.cost = {u: g.cost[u] for u in nodes}
    h.adj = {u: dict(g.adj[u]) for u in nodes}
    return h


def _leaf(const: float, stack: list[Step], folded: int) -> ReducedGraph:
    g = ReducedGraph([])
    g.const, g.stack, g.folded = const, stack, folded
    return g


class BranchAndBound:
    """Exact depth-first search over the choices of irreducible nodes, reducing between branches.

    Once branching splits the graph, its connected components are searched separately and their
    optima added: the sum of their search spaces rather than the product. The first dive takes
    each node's best local choice, i.e. it is the RN heuristic, so the result is never worse than
    RN; give a budget of at least the node count so that dive can finish. `complete` turns False
    when the budget stops the search (the best assignment found is still returned).
    """

    def __init__(self, budget: int) -> None:
        self.budget, self.states, self.complete = budget, 0, True

    def search(self, g: ReducedGraph, cap: float = math.inf) -> ReducedGraph | None:
        """The fully reduced optimum of g if it costs less than cap, else None."""
        g.reduce()
        if not g.adj:
            return g if g.const < cap else None
        if g.lower_bound() >= cap:
            return None
        comps = components(g)
        if len(comps) == 1:
            return self._branch(g, cap)
        subs = [subgraph(g, c) for c in comps]
        bounds = [s.lower_bound() for s in subs]
        const, stack, folded = g.const, list(g.stack), g.folded
        for k, sub in enumerate(subs):
            # The later components cost at least their bounds, which tightens this one's cap.
            best = self.search(sub, cap - const - sum(bounds[k + 1 :]))
            if best is None:
                return None
            const += best.const
            stack += best.stack
            folded += best.folded
        return _leaf(const, stack, folded)

    def _branch(self, g: ReducedGraph, cap: float) -> ReducedGraph | None:
        best: ReducedGraph | None = None
        u = g.pick()
        local = g.local_costs(u)
        # x_u = i costs at least const + local[i] + the cheapest choice of every non-neighbour.
        others = g.const + sum(float(c.min()) for v, c in g.cost.items() if v != u and v not in g.adj[u])
        for i in np.argsort(local, kind="stable"):
            if others + local[i] >= cap:
                break  # sorted, so every later choice is pruned too (and inf ones forbidden)
            if self.states >= self.budget:
                self.complete = False
                break
            self.states += 1
            h = g.copy()
            h.fix(u, int(i), "BB")
            found = self.search(h, cap)
            if found is not None:
                best, cap = found, found.const
        return best


def back_substitute(stack: list[Step], n: int) -> list[int]:
    """Replay the reductions in reverse: each node's neighbours are decided before it."""
    x = [0] * n
    for kind, u, nbrs, data in reversed(stack):
        if kind == "RI":
            x[u] = int(data[x[nbrs[0]]])
        elif kind == "RII":
            x[u] = int(data[x[nbrs[0]], x[nbrs[1]]])
        else:  # R0, RN, BB: the choice itself was recorded
            x[u] = int(data)
    return x
