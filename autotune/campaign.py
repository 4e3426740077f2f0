"""An autotuning campaign: measure what the database lacks, record each result as it arrives.

    work  = model_work(graphs, target)                 # every (signature, choice) the plan needs
    todo  = work - database rows of this device         # resumable: what was paid for is kept
    for outcome in runner.run(todo):                    # host worker or the boards behind a tracker
        db.record(outcome)                              # committed before the next one is awaited

Nothing is lost: a row is committed the moment its outcome arrives, so killing the campaign at
any point loses at most the measurements in flight, and a restart measures exactly the rest
(none twice: the unique key and INSERT OR IGNORE make a racing duplicate a no-op). Failed and
timed-out measurements are rows too (with their error) and are not retried unless
`retry_failed` is set. `budget_s` stops handing out new work after that many seconds.

After measuring, `solve_plan` re-runs the selection with the database as its cost source;
`ms_rows` sets each meta_schedule row beside the best hand-scheduled "tvm" row of its layer.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import LpdcError
from ..ir import Graph
from .db import Database, DatabaseCostSource, Measurement
from .keys import Fingerprint, Signature
from .layers import Work
from .measure import Outcome, Runner, Task

__all__ = ["Campaign", "CampaignOptions", "CampaignReport", "explain_origins", "ms_rows", "plan_to_json",
           "signature_label", "solve_plan", "tvm_plan", "write_json"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CampaignOptions:
    """How each measurement is taken and how long the campaign may run."""

    repeats: int = 5
    min_repeat_ms: float = 1.0
    timeout_s: float = 10.0  # per measurement, from the start of its timed part
    budget_s: float | None = None  # stop handing out work after this many seconds
    retry_failed: bool = False  # measure again what failed or timed out before
    tvm_target: str = ""  # JSON TVM target overriding the device's default


@dataclass
class CampaignReport:
    """What a campaign did: `already` rows were in the database, `outcomes` counts new rows by status."""

    total: int
    already: int
    outcomes: Counter = field(default_factory=Counter)
    remaining: int = 0
    seconds: float = 0.0
    stopped_by_budget: bool = False

    @property
    def measured(self) -> int:
        return sum(self.outcomes.values())

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "already": self.already, "measured": self.measured,
                "outcomes": dict(self.outcomes), "remaining": self.remaining, "seconds": round(self.seconds, 3),
                "stopped_by_budget": self.stopped_by_budget}


class Campaign:
    """Measures work items on one runner (one device) into one database."""

    def __init__(self, db: Database, runner: Runner, options: CampaignOptions | None = None,
                 campaign_id: str | None = None) -> None:
        self.db = db
        self.runner = runner
        self.options = options or CampaignOptions()
        self.id = campaign_id or f"{uuid.uuid4().hex[:12]}-pid{os.getpid()}"

    @property
    def device(self) -> Fingerprint:
        return self.runner.fingerprint

    def pending(self, work: Sequence[Work]) -> list[Task]:
        """Tasks for the work the database does not have yet (ok rows only with retry_failed)."""
        done = self.db.done_keys(self.device, ok_only=self.options.retry_failed)
        o = self.options
        clock = self.device.clock
        return [Task(w.kind, w.signature, w.choice, o.repeats, o.min_repeat_ms, o.timeout_s, o.tvm_target, w.payload,
                     clock) for w in work if w.key not in done]

    def _record(self, out: Outcome) -> Measurement:
        samples = tuple(out.samples) if out.status == "ok" else ()
        status = out.status if out.status in ("ok", "failed", "timeout") else "failed"
        if status == "ok" and not samples:
            status, out.error = "failed", out.error or "the worker returned no timing samples"
        m = Measurement(self.device, out.task.signature, out.task.choice, status, samples, out.error[-4000:],
                        out.task.kind, self.id, out.worker, found=out.found if status == "ok" else None)
        if not self.db.record(m, replace_failed=self.options.retry_failed):
            log.info("%s already measured by another campaign; kept the first", out.task.choice.label)
        return m

    def run(self, work: Sequence[Work], progress: Callable[[Measurement], None] | None = None) -> CampaignReport:
        """Measure the pending part of `work`; `progress` sees each recorded measurement."""
        t0 = time.monotonic()
        tasks = self.pending(work)
        report = CampaignReport(len(work), len(work) - len(tasks))
        log.info("campaign %s: %d measurements, %d already in %s", self.id, len(work), report.already, self.db.path)
        budget = self.options.budget_s

        def stop() -> bool:
            if budget is not None and time.monotonic() - t0 > budget:
                report.stopped_by_budget = True
                return True
            return False

        def on_outcome(out: Outcome) -> None:
            m = self._record(out)
            report.outcomes[m.status] += 1
            if m.status != "ok":
                log.warning("%s on %s: %s: %s", m.choice.label, m.signature.op, m.status, m.error.splitlines()[:1])
            if progress is not None:
                progress(m)

        if tasks:
            left = self.runner.run(tasks, on_outcome, stop)
            report.remaining = len(left)
        report.seconds = time.monotonic() - t0
        return report


def solve_plan(graph: Graph, db: Database, device: Fingerprint, select_device: str = "numpy"):
    """Select primitives for (a copy of) `graph` with measured costs first, the model elsewhere.

    Returns (planned graph, Plan). Layers whose every choice was measured are priced from the
    database ("cached" in the plan's origins), the rest by the analytical model ("model")."""
    from ..passes.select.select_primitives import SelectConfig, select

    source = DatabaseCostSource(db, device)
    g = graph.copy()
    config = SelectConfig(device=select_device, costs="cache", source=source)
    planned, plan = select(g, config)
    if plan is None:
        raise LpdcError("the graph already has a plan; tune the model before selection", where=graph.name)
    return planned, plan


def explain_origins(graph: Graph, plan: Any, source: DatabaseCostSource) -> str:
    """Per layer with a real choice: where the chosen choice's cost came from (for --explain)."""
    from ..passes.select.costs import layer_signature

    nodes = {n.name: n for n in graph.nodes}
    lines = [f"cost origins for @{plan.graph} (autotune database first, the analytical model where it has no row):"]
    for layer in plan.layers:
        node = nodes.get(layer.name)
        if layer.choices < 2 or node is None:
            continue
        desc = source.describe(layer_signature(node, graph), layer.choice) if layer.origin != "model" else None
        lines.append(f"  {layer.name:<24} {layer.choice:<22} {desc or 'analytical model'}")
    return "\n".join(lines)


def plan_to_json(plan: Any, device: Fingerprint, db_path: str | os.PathLike[str]) -> dict[str, Any]:
    """A JSON-ready record of a solved plan and where its costs came from."""
    d = asdict(plan)
    d["costs_from"] = {"database": str(db_path), "device": json.loads(device.key)}
    return d


def tvm_plan(graphs: Sequence[Graph], db: Database, device: Fingerprint) -> dict[str, Any]:
    """For TVM devices: each layer's fastest measured kernel config (the backend builds that one)."""
    from .layers import tvm_work

    source = DatabaseCostSource(db, device)
    layers = []
    for g in graphs:
        seen = set()
        for w in tvm_work(g, device.target.split("+")[0], 1):
            if w.signature.key in seen:
                continue
            seen.add(w.signature.key)
            base = w.choice.without_config()
            cost, best = source.lookup(w.signature, base), source.best(w.signature, base)
            layers.append({"graph": g.name, "signature": w.signature.as_dict(), "primitive": base.primitive,
                           "config": best.choice.config_dict() if best else None, "seconds": cost,
                           "origin": "measured" if cost is not None else "none",
                           "kind": best.kind if best else None, "found": best.found if best else None})
    return {"device": json.loads(device.key), "layers": layers}


def signature_label(sig: Signature) -> str:
    """Short geometry of a conv / dense signature: `conv 1x8x16x16 -> 16 k3x3 s1 g1`, `dense 1x512 -> 10`."""
    d = sig.as_dict()
    if sig.op == "conv":
        return (f"conv {d['n']}x{d['c']}x{d['h']}x{d['w']} -> {d['o']} k{d['kh']}x{d['kw']} "
                f"s{d['stride'][0]} g{d.get('group', 1)}")
    if sig.op == "fully_connected":
        return f"dense {d['batch']}x{d['k']} -> {d['m']}"
    return sig.key


def ms_rows(db: Database, device: Fingerprint, work: Sequence[Work]) -> list[dict[str, Any]]:
    """Per meta_schedule work item: its row (status, median, what it found) and the best ok
    hand-scheduled "tvm" row of the same layer and device, by median, with the speedup over it."""
    rows = []
    for w in work:
        if w.kind != "meta_schedule":
            continue
        layer = db.rows_for(device, w.signature)
        m = next((r for r in layer if r.choice == w.choice), None)
        tvm = [r for r in layer if r.kind == "tvm" and r.status == "ok" and r.choice.device == w.choice.device]
        best = min(tvm, key=lambda r: r.median_s or float("inf"), default=None)
        median = m.median_s if m is not None else None
        rows.append({
            "layers": w.payload.get("layers", []), "signature": w.signature.as_dict(),
            "label": signature_label(w.signature), "flops": w.payload.get("flops"),
            "device": w.choice.device, "trials": w.choice.config_dict().get("trials"),
            "status": m.status if m is not None else "not measured", "median_s": median,
            "found": m.found if m is not None else None, "error": m.error if m is not None else "",
            "tvm_best": None if best is None else {"config": best.choice.config_dict(), "median_s": best.median_s},
            "speedup": best.median_s / median if best is not None and best.median_s and median else None})
    return rows


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write `data` as JSON atomically (a partial plan file never appears)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, default=str))
    os.replace(tmp, p)
    return p
