"""Do measured costs rank plans like the plans really run? The experiment behind that claim.

For one model: draw random valid plans (each conv / fully_connected layer a random primitive
among those that apply; ops without primitives take their producer's layout when they can,
else a random one), predict each plan's cost twice, from the autotune database and from the
analytical model (the PBQP objective evaluated at the plan: layer times plus conversions), run
each plan end to end on the NumPy backend, and compare the rankings (Spearman's rho).
Plans are visited in rounds (each visit: a warm-up, then timed runs) so machine load drifts hit
all plans alike; each plan's latency is its fastest run, the estimator the costs use too, on the
clock the measurements used (`Fingerprint.clock`: process CPU time on a shared machine). The
tuned plan (PBQP on measured costs) and the untuned one (PBQP on the model) run the same way.

Used by bench/bench_autotune_ranking.py (full size) and its reduced test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..ir import Graph, TensorType
from .db import Database, DatabaseCostSource
from .keys import Fingerprint

__all__ = ["RankingResult", "at_resolution", "interleaved_latency", "random_plan", "ranking_experiment"]


def at_resolution(graph: Graph, height: int, width: int) -> Graph:
    """A copy of an image model with its input resized (every type re-inferred; global pooling
    keeps the classifier's shapes)."""
    g = graph.copy()
    x = g.inputs[0]
    n, c = x.type.shape[:2]
    x.type = TensorType((n, c, height, width), x.type.dtype, x.type.layout, x.type.quant)
    g.name = f"{graph.name}@{height}x{width}"
    for node in g.nodes:
        if node.op != "const":
            g.reinfer(node)
    g.verify()
    return g


def random_plan(sel, rng: np.random.Generator) -> dict[str, int]:
    """A random valid choice per PBQP node (see the module docstring)."""
    from ..passes.select.build import key_of

    choice: dict[str, int] = {}
    for key, entry in sel.entries.items():
        n = len(entry.choices)
        if entry.node.op in ("conv", "fully_connected") or n == 1:
            choice[key] = int(rng.integers(n))
            continue
        follow = None
        for i in entry.data:
            producer = entry.node.inputs[i].producer
            if producer is not None and key_of(producer) in choice:
                src = sel.entries[key_of(producer)]
                follow = src.choices[choice[src.key]].layout
                break
        layouts = [c.layout for c in entry.choices]
        choice[key] = layouts.index(follow) if follow in layouts else int(rng.integers(n))
    return choice


def _planned(graph: Graph, pricer, choice: Mapping[str, int] | None = None) -> tuple[Graph, dict[str, int], float]:
    """(planned copy of `graph`, the choice, its cost under `pricer`); `choice` None = PBQP optimum."""
    from ..passes.select.apply import apply_plan
    from ..passes.select.build import build_problem
    from ..passes.select.pbqp import evaluate, solve

    g = graph.copy()
    g.toposort()
    sel = build_problem(g, pricer)
    picked = dict(choice) if choice is not None else dict(solve(sel.problem).choice)
    cost = evaluate(sel.problem, picked)
    apply_plan(sel, picked)
    return sel.graph, picked, cost


def interleaved_latency(graphs: Sequence[Graph], repeats: int, rounds: int = 2, seed: int = 0,
                        clock: str = "wall") -> list[float]:
    """Fastest seconds of one run per graph (the estimator the measured costs use too).

    Each round visits every graph once: one warm-up run (primitives re-pack their weights if
    another plan evicted them from the shared packed-weight cache, as a deployed model packs once
    at load time), then `repeats` timed runs. Rounds spread load drift over all graphs."""
    from ..backends.numpy import compile_numpy
    from .numpy_kind import CLOCKS

    now = CLOCKS[clock]
    exes = [compile_numpy(g) for g in graphs]
    rng = np.random.default_rng(seed)
    x = graphs[0].inputs[0]
    inputs = {x.name: rng.standard_normal(x.type.shape).astype(np.float32)}
    best = [float("inf")] * len(exes)
    for _ in range(max(1, rounds)):
        for i, exe in enumerate(exes):
            exe.run(inputs)
            for _ in range(max(1, repeats)):
                t0 = now()
                exe.run(inputs)
                best[i] = min(best[i], now() - t0)
    return best


@dataclass
class RankingResult:
    """Predicted costs (measured / model) and measured latencies of random plans, in seconds."""

    model: str
    predicted_measured: list[float]
    predicted_model: list[float]
    latency: list[float]
    spearman_measured: float
    spearman_model: float
    tuned_latency: float
    untuned_latency: float
    tuned_predicted: float
    extra: dict[str, float] = field(default_factory=dict)

    def summary(self) -> str:
        return (f"{self.model}: {len(self.latency)} random plans, latency {min(self.latency) * 1e3:.2f}-"
                f"{max(self.latency) * 1e3:.2f} ms; Spearman(measured costs, latency) = {self.spearman_measured:.3f}, "
                f"Spearman(analytical model, latency) = {self.spearman_model:.3f}; tuned PBQP plan "
                f"{self.tuned_latency * 1e3:.2f} ms vs untuned (model) {self.untuned_latency * 1e3:.2f} ms")


def ranking_experiment(graph: Graph, db: Database, device: Fingerprint, plans: int = 20, repeats: int = 2,
                       rounds: int = 3, seed: int = 0) -> RankingResult:
    """Run the experiment of the module docstring on an optimised `graph` already tuned into `db`
    (with the BLAS thread count the measurements were taken with: `device.threads`)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(device.threads or None, user_api="blas"):
        return _ranking(graph, db, device, plans, repeats, rounds, seed)


def _ranking(graph: Graph, db: Database, device: Fingerprint, plans: int, repeats: int, rounds: int,
             seed: int) -> RankingResult:
    from scipy.stats import spearmanr

    from ..backends.target import DEVICES
    from ..passes.select.pricing import Pricer

    measured = Pricer(DEVICES["numpy"], DatabaseCostSource(db, device), measure=False)
    model = Pricer(DEVICES["numpy"])
    rng = np.random.default_rng(seed)
    g0 = graph.copy()
    g0.toposort()
    from ..passes.select.build import build_problem

    template = build_problem(g0.copy(), model)
    graphs, pm, pa = [], [], []
    for _ in range(plans):
        choice = random_plan(template, rng)
        planned, _, cost = _planned(g0, measured, choice)
        graphs.append(planned)
        pm.append(cost)
        pa.append(_planned(g0, model, choice)[2])
    tuned, _, tuned_cost = _planned(g0, measured)
    untuned = _planned(g0, model)[0]
    lat = interleaved_latency([*graphs, tuned, untuned], repeats, rounds, seed, device.clock)
    rho_m = float(spearmanr(pm, lat[:plans]).statistic)
    rho_a = float(spearmanr(pa, lat[:plans]).statistic)
    return RankingResult(graph.name, pm, pa, lat[:plans], rho_m, rho_a, lat[plans], lat[plans + 1], tuned_cost)
