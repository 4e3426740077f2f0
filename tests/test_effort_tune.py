"""Tuning the effort knobs under an accuracy budget on the digits CNN (seed 002, chapter 2).

Goal (the issue's): >= 1.5x fewer operations (MACs x 2 + the knobs' overhead, over conv and fc)
at <= 0.5 points of top-1 accuracy lost on the held-out test split, the thresholds tuned by binary
search on the validation split only. bench/bench_effort.py runs the full experiment with timings.
"""

from __future__ import annotations

import numpy as np
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.backends.numpy.approx import ApproxExecutable, EffortConfig, KnobSettings, from_json, to_json
from lpdc.errors import LpdcError
from lpdc.passes.effort import bisect_max, predict_top1, tune_effort
from lpdc.tools.digits_cnn import accuracy, digits_split, train_digits_cnn

BUDGET = 0.005  # 0.5 points of top-1 accuracy


@pytest.fixture(scope="module")
def tuned():
    graph, (x_test, y_test) = train_digits_cnn(seed=0)
    split = digits_split(0)
    result = tune_effort(graph, split.x_val, split.y_val, budget=BUDGET)
    return graph, split, result


def test_bisect_max_finds_the_feasible_edge():
    calls = []

    def ok(level: float) -> bool:
        calls.append(level)
        return level <= 0.3

    level = bisect_max(ok, iterations=7)
    assert 0.3 - 1 / 128 <= level <= 0.3 and len(calls) == 9
    assert bisect_max(lambda v: False) is None
    assert bisect_max(lambda v: True) == 1.0


def test_goal_fewer_operations_within_the_accuracy_budget_on_test(tuned):
    graph, split, result = tuned
    exe = ApproxExecutable(graph, result.config)
    base = accuracy(compile_numpy(graph), split.x_test, split.y_test)
    approx = accuracy(exe, split.x_test, split.y_test)
    counts = exe.total()
    assert counts.reduction >= 1.5, counts
    assert approx >= base - BUDGET, (base, approx)
    # the tuner kept validation accuracy within the budget, and its own count agrees with a re-run
    assert result.accuracy >= result.base_accuracy - BUDGET
    assert result.counts.reduction >= 1.5
    assert counts.dense_macs == len(split.x_test) * 23680  # 450 test images, three full batches of 150


def test_every_stage_is_reported_and_conv2_uses_spet(tuned):
    _, _, result = tuned
    stages = [(s.layer, s.knob) for s in result.steps]
    assert stages == [(layer, knob) for layer in ("conv1", "conv2") for knob in ("spet", "sfma", "sdss")]
    assert result.config["conv2"].spet  # most of conv2's neurons saturate: SPET always pays there
    assert all(s.accuracy >= s.target for s in result.steps)
    assert [s.target for s in result.steps] == sorted((s.target for s in result.steps), reverse=True)


def test_each_knob_alone_saves_operations_on_conv2(tuned):
    graph, split, result = tuned
    knobs = result.config["conv2"]
    x = split.x_val[:150]
    for alone in (KnobSettings(spet_threshold=knobs.spet_threshold, spet_fraction=knobs.spet_fraction),
                  KnobSettings(sfma_variance=0.0)):  # zero-variance maps (dead after ReLU) approximate exactly
        exe = ApproxExecutable(graph, EffortConfig(conv2=alone))
        exe.run({"x": x})
        assert exe.counts["conv2"].reduction > 1.05, alone


def test_tuned_config_round_trips_through_json(tuned):
    graph, split, result = tuned
    again = from_json(to_json(result.config))
    x = split.x_val[:150]
    np.testing.assert_array_equal(ApproxExecutable(graph, again).run({"x": x})["logits"],
                                  ApproxExecutable(graph, result.config).run({"x": x})["logits"])


def test_predict_top1_pads_the_last_batch(tuned):
    graph, split, _ = tuned
    x = split.x_val[:170]
    assert np.array_equal(predict_top1(compile_numpy(graph), x)[:150],
                          compile_numpy(graph).run({"x": x[:150]})["logits"].argmax(axis=1))
    assert len(predict_top1(compile_numpy(graph), x)) == 170


def test_bad_tuning_requests_are_lpdc_errors(tuned):
    graph, split, _ = tuned
    with pytest.raises(LpdcError, match="unknown knobs"):
        tune_effort(graph, split.x_val, split.y_val, knobs=("fast",))
    with pytest.raises(LpdcError, match="labels"):
        tune_effort(graph, split.x_val, split.y_val[:3])
    with pytest.raises(LpdcError, match="criterion"):
        tune_effort(graph, split.x_val, split.y_val, criterion="speed")
