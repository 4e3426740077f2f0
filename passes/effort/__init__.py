"""Effort-knob tuning: choose per-layer SPET/SDSS/SFMA thresholds under an accuracy budget.

The knobs are a side table (`EffortConfig`), not IR attributes, so this is a tuner that returns a
config rather than a registered Graph -> Graph pass; `ApproxExecutable(graph, config)` runs it.
"""

from .tune import KNOBS, TuneResult, TuneStep, bisect_max, predict_top1, settings_at, tune_effort

__all__ = ["KNOBS", "TuneResult", "TuneStep", "bisect_max", "predict_top1", "settings_at", "tune_effort"]
