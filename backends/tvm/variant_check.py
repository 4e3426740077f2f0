"""Keep measured kernel variants only if the whole model runs faster with them (variants="measure").

variants.py times each conv's candidates alone, on a hot cache, with inputs that stay in L2. In a
model a layer's input arrives from the previous kernel and its output evicts the next one's, so
the tile that wins alone can lose in place (two bench_tvm runs on a 2-core Zen 4 put the tuned
build at 0.94-1.10x the default one's time on MobileNet v1, v2 and ResNet-18). This check builds
the default plan beside the measured one, runs both end to end in alternating blocks, and keeps
the measured plan only when the median of the per-round ratios says it is faster: a tuned build
is never slower than the default one, by this host's clock.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ...ir import Graph
from .build import Plan, build_module
from .target import TvmTarget

log = logging.getLogger(__name__)

ROUNDS = 7  # alternating rounds of blocks (odd: the median is one round's ratio)
BLOCK = 3  # runs per build per round, after one warm-up run


def in_model_ratio(run_a: Callable[[], object], run_b: Callable[[], object], rounds: int = ROUNDS,
                   block: int = BLOCK) -> tuple[float, float, float]:
    """(median over rounds of time_b / time_a, median seconds of a, of b)."""
    ratios, ta, tb = alternating_rounds(run_a, run_b, rounds, block)
    return statistics.median(ratios), statistics.median(ta), statistics.median(tb)


def alternating_rounds(run_a: Callable[[], object], run_b: Callable[[], object], rounds: int,
                       block: int) -> tuple[list[float], list[float], list[float]]:
    """Per round: (time_b / time_a, a's seconds, b's seconds), each the median of a block of runs
    after one warm-up run. Blocks alternate A B, B A, ... so a drift in machine speed hits both alike."""
    ta, tb, ratios = [], [], []
    for r in range(rounds):
        got = {}
        for name, fn in ((("a", run_a), ("b", run_b)) if r % 2 == 0 else (("b", run_b), ("a", run_a))):
            fn()
            times = []
            for _ in range(block):
                t = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t)
            got[name] = statistics.median(times)
        ta.append(got["a"])
        tb.append(got["b"])
        ratios.append(got["b"] / got["a"])
    return ratios, ta, tb


def keep_faster(graph: Graph, measured: Plan, default: Plan, tt: TvmTarget,
                make_exe: Callable[[Plan, Any], Any]) -> tuple[Plan, Any, dict[str, Any]]:
    """(the plan to use, its built library, the record) after timing both plans in the model.
    `make_exe(plan, lib)` wraps a plan and its library as a runnable executable."""
    from ...ir import random_inputs
    from .threads import ensure_threads

    ensure_threads()
    inputs = random_inputs(graph)
    libs = {"measured": build_module(measured, tt), "default": build_module(default, tt)}
    exes = {k: make_exe(p, libs[k]) for k, p in (("measured", measured), ("default", default))}
    out_m, out_d = (exes[k].run(inputs) for k in ("measured", "default"))
    for name, ref in out_d.items():  # both plans compute the same function (a sanity check, not a tolerance test)
        if not np.allclose(out_m[name], ref, rtol=1e-3, atol=1e-3 * float(np.abs(ref).max()) + 1e-6):
            log.warning("measured kernel variants disagree with the default ones on %s; keeping the default", name)
            return default, libs["default"], {"kept": "default", "why": "outputs differ"}
    ratio, t_default, t_measured = in_model_ratio(lambda: exes["default"].run(inputs),
                                                  lambda: exes["measured"].run(inputs))
    kept = "measured" if ratio < 1.0 else "default"
    record = {"kept": kept, "measured_over_default": ratio, "default_s": t_default, "measured_s": t_measured}
    log.info("measured kernel variants in the model: %.3f x the default tiles' time -> keeping the %s plan",
             ratio, kept)
    return (measured, libs["measured"], record) if kept == "measured" else (default, libs["default"], record)
