"""Autotuning: measure layer choices on the host or on boards, keep every measurement, re-plan.

    keys.py        what a measurement is of: device fingerprint, layer signature, choice
    db.py          the SQLite database (WAL, one committed row per measurement) and
                   `DatabaseCostSource`, the cost source the selection pass reads
    layers.py      which (signature, choice) pairs a model's plan needs
    measure.py     tasks, worker processes with deadlines, the local runner
    rpc.py         the TVM RPC runner (one worker per board under a tracker key), trackers/servers
    numpy_kind.py  / tvm_kind.py: the two measurement kinds (run inside worker processes)
    worker.py      the worker process (`python -m lpdc.autotune.worker`)
    campaign.py    a campaign: measure what the database lacks, then solve the plan with it
    ranking.py     the experiment that checks measured costs rank plans like real latency
    (tools/tune_cli.py holds the `lpdc tune`, `lpdc rpc` and `lpdc tunedb` commands)

Plugging measured costs into primitive selection (measured first, the analytical model for the
layers the database does not cover; plans report which was used, `lpdc tune --explain` per layer):

    from lpdc.autotune import Database, DatabaseCostSource, Fingerprint
    from lpdc.passes.select.select_primitives import select_config

    source = DatabaseCostSource(Database("autotune.db"), Fingerprint.host("numpy"))
    with select_config(source=source, costs="cache"):
        exe = lpdc.compile(graph, opt_level=3)

or simply `select_config(cache_path="autotune.db")`: an SQLite path makes the selection pass use
this database as its cost cache (and store its own micro-benchmarks there).
"""

from .db import Database, DatabaseCostSource, Measurement
from .keys import Choice, Fingerprint, Signature

__all__ = ["Choice", "Database", "DatabaseCostSource", "Fingerprint", "Measurement", "Signature"]
