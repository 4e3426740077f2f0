"""Do measured costs rank plans like their real latency? ResNet-18 and MobileNet v2 on this host.

    python bench/bench_autotune_ranking.py [--models resnet18 mobilenet_v2] [--resolution 224]
           [--plans 24] [--clock cpu|wall] [--threads 1] [--db PATH] [--json OUT.json]

For each model: a tuning campaign measures every (layer, choice) the selection pass prices into an
autotune database (kept between runs: a second run only re-plans and re-times), then
`lpdc.autotune.ranking.ranking_experiment` draws random valid plans, predicts each plan's cost
from the measured costs and from the analytical model, runs every plan end to end on the NumPy
backend, and reports Spearman's rho of each prediction against the measured latency, plus the
latency of the tuned PBQP plan (measured costs) against the untuned one (analytical model).

Defaults suit the shared 2-core development machine: one BLAS thread and process CPU time, so
that other people's jobs do not decide the ranking (wall time is the right clock on a dedicated
board: --clock wall --threads 0 keeps the library's default threads).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from lpdc.autotune.campaign import Campaign, CampaignOptions
from lpdc.autotune.db import Database
from lpdc.autotune.layers import model_work, optimise
from lpdc.autotune.measure import LocalRunner
from lpdc.autotune.ranking import at_resolution, ranking_experiment
from lpdc.tools.zoo import MODELS, build


def run_model(name: str, args: argparse.Namespace, db: Database) -> dict:
    graph = build(name)
    if args.resolution != graph.inputs[0].type.shape[2]:
        graph = at_resolution(graph, args.resolution, args.resolution)
    graph = optimise(graph)
    runner = LocalRunner(threads=args.threads or None, clock=args.clock)
    campaign = Campaign(db, runner, CampaignOptions(repeats=args.repeats, min_repeat_ms=1.0, timeout_s=120.0))
    t0 = time.monotonic()
    report = campaign.run(model_work([graph]))
    tuned_s = time.monotonic() - t0
    t0 = time.monotonic()
    result = ranking_experiment(graph, db, campaign.device, plans=args.plans, repeats=args.runs, rounds=args.rounds,
                                seed=args.seed)
    print(result.summary(), flush=True)
    print(f"  campaign: {report.to_json()} ({tuned_s:.0f} s); ranking {time.monotonic() - t0:.0f} s", flush=True)
    print(f"  {'plan':>4} {'measured-cost ms':>17} {'model ms':>10} {'latency ms':>11}")
    order = sorted(range(len(result.latency)), key=lambda i: result.latency[i])
    for i in order:
        print(f"  {i:>4} {result.predicted_measured[i] * 1e3:17.2f} {result.predicted_model[i] * 1e3:10.2f} "
              f"{result.latency[i] * 1e3:11.2f}")
    return {"model": result.model, "device": json.loads(campaign.device.key), "campaign": report.to_json(),
            "spearman_measured": result.spearman_measured, "spearman_model": result.spearman_model,
            "tuned_latency_ms": result.tuned_latency * 1e3, "untuned_latency_ms": result.untuned_latency * 1e3,
            "tuned_predicted_ms": result.tuned_predicted * 1e3,
            "plans": [{"measured_cost_ms": a * 1e3, "model_cost_ms": b * 1e3, "latency_ms": c * 1e3}
                      for a, b, c in zip(result.predicted_measured, result.predicted_model, result.latency,
                                         strict=True)]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["resnet18", "mobilenet_v2"])
    p.add_argument("--resolution", type=int, default=224)
    p.add_argument("--plans", type=int, default=24)
    p.add_argument("--runs", type=int, default=2, help="timed runs per plan visit")
    p.add_argument("--rounds", type=int, default=2, help="visits per plan")
    p.add_argument("--repeats", type=int, default=5, help="timed samples per measurement")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--threads", type=int, default=1, help="BLAS threads (0: the library default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--db", default="bench_autotune_ranking.db")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    results = []
    with Database(args.db) as db:
        for name in args.models:
            if name not in MODELS:
                print(f"{name}: not in the zoo, skipped", file=sys.stderr)
                continue
            results.append(run_model(name, args, db))
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    ok = all(r["spearman_measured"] >= 0.9 and r["tuned_latency_ms"] <= r["untuned_latency_ms"] * 1.02
             for r in results)
    print("PASS" if ok else "CHECK: a model missed Spearman >= 0.9 or tuned <= untuned")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
