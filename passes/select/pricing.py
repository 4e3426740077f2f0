"""Pricing choices: measured costs where there are any, the analytical model elsewhere.

For a node with several choices, either every choice's cost comes from measurements (the cost
source, topped up by micro-benchmarks when measuring is on) or every one comes from the model:
the two scales are never mixed within one node's vector. Single-choice nodes decide nothing: they
are never benchmarked (that would only slow compilation down), only looked up.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ...backends.target import Device
from ...errors import LpdcError
from ...ir import Graph, Node, TensorType
from . import analytical
from .choices import Choice
from .costs import CostSource, convert_signature, layer_signature
from .measure import DEFAULT_BUDGET_S, Clock, time_convert, time_node

log = logging.getLogger(__name__)


@dataclass
class Pricer:
    """Costs for one device. `source` may also `store`/`save` (a CostCache) to keep measurements."""

    device: Device
    source: CostSource | None = None
    measure: bool = False
    budget_s: float = DEFAULT_BUDGET_S
    label: str = ""  # how plans name the cost source: "numpy/blas2 (measured)"
    clock: Clock = time.perf_counter
    origins: Counter = field(default_factory=Counter)  # how many costs came from where
    _converts: dict[tuple[str, str, str], float] = field(default_factory=dict)

    def node_costs(self, node: Node, graph: Graph, choices: Sequence[Choice]) -> tuple[np.ndarray, str]:
        """(one cost per choice in seconds, "measured" | "cached" | "model")."""
        if self.source is not None or self.measure:
            found = self._measured(node, graph, choices, bench=self.measure and len(choices) > 1)
            if found is not None:
                return found
        costs = np.array([analytical.estimate_node(node, graph, c, self.device) for c in choices])
        self.origins["model"] += len(choices)
        return costs, "model"

    def _measured(self, node: Node, graph: Graph, choices: Sequence[Choice],
                  bench: bool) -> tuple[np.ndarray, str] | None:
        sig = layer_signature(node, graph)
        costs = [self.source.lookup(sig, c.label) if self.source is not None else None for c in choices]
        origin = "cached"
        for i, c in enumerate(choices):
            if costs[i] is None and bench:
                costs[i] = self._bench(sig, c.label, lambda c=c: time_node(node, graph, c, self.budget_s, self.clock))
                origin = "measured"
        if any(x is None for x in costs):
            return None
        self.origins[origin] += len(choices)
        return np.array(costs, dtype=np.float64), origin

    def _bench(self, sig: str, label: str, run: Callable[[], float]) -> float:
        try:
            seconds = float(run())
        except (LpdcError, ArithmeticError, MemoryError, ValueError) as e:  # a choice that cannot run is not offered
            log.warning("benchmark of %s failed: %s", label, e)
            return float("inf")
        store = getattr(self.source, "store", None)
        if store is not None and np.isfinite(seconds):
            store(sig, label, seconds)
        return seconds

    def convert_cost(self, t: TensorType, src: str, dst: str) -> float:
        """Seconds to move activation `t` (default-layout type) from layout `src` to `dst`."""
        if src == dst or "-" in (src, dst):
            return 0.0
        sig = convert_signature(t)
        key = (sig, src, dst)
        if key not in self._converts:
            label = f"{src}->{dst}"
            cost = self.source.lookup(sig, label) if self.source is not None else None
            if cost is None and self.measure:
                cost = self._bench(sig, label, lambda: time_convert(t, src, dst, self.budget_s, self.clock))
            if cost is None:
                cost = analytical.estimate_convert(t, src, dst, self.device)
            self._converts[key] = cost
        return self._converts[key]

    def save(self) -> None:
        save = getattr(self.source, "save", None)
        if save is not None:
            save()
