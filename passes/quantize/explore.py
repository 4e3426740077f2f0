"""Phase 2 of the pipeline, network space exploration: per-layer bit widths within a budget, least memory.

Input: the sensitivity rows of phase 1 (explicit specs per layer, variable and width) and a budget
(accuracy drop in points, or an SQNR floor in dB). Costs of single variables add up roughly (see
metrics.py), which guides a greedy search whose every step is checked on the whole network:
  1. start: each variable at its narrowest width whose cost alone is within an equal share of the budget;
  2. repair: while the combination misses the budget, widen the variable that costs most at its width;
  3. descend: narrow one variable at a time, most bits saved per estimated cost first, keeping a step
     only if the whole network still meets the budget; a step that fails is not retried.
The result is a QuantConfig with explicit specs (FL, ranges) and QDQ lowering, as phase 1 measured.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ...errors import LpdcError
from .config import QuantConfig
from .metrics import Evaluator, memory
from .sensitivity import SensitivityRow

Key = tuple[str, str]  # (layer, variable)


@dataclass
class Exploration:
    """The chosen configuration and how it scores."""

    config: QuantConfig
    metric: float
    cost: float
    budget: float
    met: bool
    memory: dict[str, int]
    evaluations: int
    history: list[tuple[str, float]] = field(default_factory=list)


def _config(rows: dict[tuple[str, str, int], SensitivityRow], choice: dict[Key, int], method: str,
            percentile: float) -> QuantConfig:
    layers: dict[str, dict] = {}
    for (layer, var), bits in choice.items():
        layers.setdefault(layer, {})[var] = rows[(layer, var, bits)].spec
    return QuantConfig(layers=layers, calibration=method, percentile=percentile, lowering="qdq")


def explore(ev: Evaluator, rows: Sequence[SensitivityRow], budget: float, method: str = "minmax",
            percentile: float = 99.99, max_evals: int = 200,
            progress: Callable[[str], None] | None = None) -> Exploration:
    """Choose per-layer, per-variable widths meeting `budget` with the least memory (module docstring)."""
    if not rows:
        raise LpdcError("the exploration needs the layer analysis' rows; there are none", where="quantize")
    table = {(r.layer, r.variable, r.bits): r for r in rows}
    ladders: dict[Key, list[int]] = {}
    for r in rows:
        ladders.setdefault((r.layer, r.variable), []).append(r.bits)
    ladders = {k: sorted(set(v)) for k, v in ladders.items()}
    allowed = ev.budget_cost(budget)
    share = allowed / len(ladders)
    choice = {k: next((b for b in lad if table[(*k, b)].cost <= share), lad[-1]) for k, lad in ladders.items()}
    history: list[tuple[str, float]] = []

    def score(ch: dict[Key, int], step: str) -> tuple[float, float]:
        m, c = ev.measure(_config(table, ch, method, percentile))
        history.append((step, m))
        if progress is not None:
            progress(step)
        return m, c

    metric, cost = score(choice, "start")
    while cost > allowed:  # repair: widen the costliest variable
        wider = [k for k in choice if choice[k] < ladders[k][-1]]
        if not wider:
            break
        k = max(wider, key=lambda k: table[(*k, choice[k])].cost)
        choice[k] = ladders[k][ladders[k].index(choice[k]) + 1]
        metric, cost = score(choice, f"widen {k[0]}.{k[1]} to {choice[k]}")
    if cost <= allowed:
        choice, metric, cost = _descend(ev, table, ladders, choice, (metric, cost), allowed, score, max_evals)
    config = _config(table, choice, method, percentile)
    return Exploration(config, metric, cost, budget, cost <= allowed, memory(ev.graph, config), ev.evaluations,
                       history)


def _descend(ev: Evaluator, table, ladders: dict[Key, list[int]], choice: dict[Key, int],
             current: tuple[float, float], allowed: float, score,
             max_evals: int) -> tuple[dict[Key, int], float, float]:
    """Greedy narrowing under the budget; each (variable, width) step is tried at most once."""
    tried: set[tuple[Key, int]] = set()
    eps = max(allowed, 1e-12) * 1e-2  # free steps rank by the bits they save
    while ev.evaluations < max_evals:
        moves = []
        for k, bits in choice.items():
            i = ladders[k].index(bits)
            if i == 0 or (k, ladders[k][i - 1]) in tried:
                continue
            lower = ladders[k][i - 1]
            cur, new = table[(*k, bits)], table[(*k, lower)]
            saved = cur.memory_bits - new.memory_bits
            moves.append((saved / (max(new.cost - cur.cost, 0.0) + eps), k, lower))
        if not moves:
            break
        moves.sort(key=lambda m: (-m[0], m[1]))
        for _, k, lower in moves:
            tried.add((k, lower))
            trial = {**choice, k: lower}
            m, c = score(trial, f"narrow {k[0]}.{k[1]} to {lower}")
            if c <= allowed:
                choice, current = trial, (m, c)
                break
            if ev.evaluations >= max_evals:
                break
        else:
            break
    return choice, *current
