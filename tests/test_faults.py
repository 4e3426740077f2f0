"""DRAM retention faults in 16-bit fixed-point weights (seed 002, section 4.2.2): the bit masks, the
accuracy-vs-p_retain curve on the digits CNN, and `lpdc analyze --faults retention`."""

from __future__ import annotations

import json

import lpdc
import matplotlib.image as mpimg
import numpy as np
import pytest
from lpdc.errors import LpdcError
from lpdc.tools.cli import main
from lpdc.tools.digits_cnn import accuracy, train_digits_cnn
from lpdc.tools.faults import (
    FixedTensor,
    parse_p_retain,
    retention_curve,
    retention_faults,
    stored_tensors,
    to_fixed,
    with_params,
)


def popcount(a: np.ndarray) -> np.ndarray:
    return np.array([bin(int(v)).count("1") for v in a.ravel()]).reshape(a.shape)


def test_fixed_point_uses_the_finest_fractional_length_that_fits():
    w = np.array([0.5, -0.26, 0.001, -0.5], np.float32)
    t = to_fixed(w, 16)
    assert t.frac == 15 and t.codes.max() <= 32767 and t.codes.min() >= -32768  # 0.5 * 2**15 = 16384 fits
    assert np.max(np.abs(t.values() - w)) <= 2.0 ** -16
    big = to_fixed(np.array([3.0, -700.0]), 16)
    assert big.frac == 5 and np.allclose(big.values(), [3.0, -700.0])
    assert to_fixed(np.zeros(3), 16).codes.tolist() == [0, 0, 0]
    with pytest.raises(LpdcError, match="2-32 bits"):
        to_fixed(w, 1)


def test_faults_only_clear_stored_ones():
    rng = np.random.default_rng(0)
    t = to_fixed(rng.standard_normal(4000), 16)
    stored = t.codes & 0xFFFF
    for model in ("bit", "word"):
        after = retention_faults(t, 0.9, rng, model) & 0xFFFF
        assert not np.any(after & ~stored), model  # a leaking cell never gains charge
    np.testing.assert_array_equal(retention_faults(t, 1.0, rng, "bit"), t.codes)
    assert not retention_faults(t, 0.0, rng, "bit").any()


def test_bit_model_clears_each_one_with_probability_one_minus_p():
    rng = np.random.default_rng(1)
    t = to_fixed(rng.standard_normal(20000), 16)
    ones = popcount(t.codes & 0xFFFF).sum()
    lost = ones - popcount(retention_faults(t, 0.95, rng, "bit") & 0xFFFF).sum()
    assert lost / ones == pytest.approx(0.05, abs=0.005)


def test_word_model_loses_at_most_one_bit_per_word():
    rng = np.random.default_rng(2)
    t = to_fixed(rng.standard_normal(20000), 16)
    before = popcount(t.codes & 0xFFFF)
    diff = before - popcount(retention_faults(t, 0.9, rng, "word") & 0xFFFF)
    assert set(np.unique(diff)) <= {0, 1}
    # a word is hit with probability 0.1 and then loses a uniformly chosen bit, if that bit was a 1
    assert diff.mean() == pytest.approx(0.1 * before.mean() / 16, rel=0.1)


def test_a_cleared_sign_bit_makes_a_small_negative_weight_large():
    t = FixedTensor(np.array([-1]), frac=15, bits=16)  # 0xFFFF
    rng = np.random.default_rng(3)
    hits = {int(retention_faults(t, 0.5, rng, "word")[0]) for _ in range(400)}
    assert 32767 in hits and -1 in hits and all(-32768 <= h <= 32767 for h in hits)


@pytest.fixture(scope="module")
def digits():
    return train_digits_cnn(seed=0)


def test_retention_curve_on_the_digits_cnn(digits):
    graph, (x, y) = digits
    p = parse_p_retain("0.9..1.0:0.02")
    curve = retention_curve(graph, p, x, y, trials=2, seed=0)
    fixed = with_params(graph, {k: t.values() for k, t in stored_tensors(graph).items()})
    assert curve.metric == "accuracy" and [q.p_retain for q in curve.points] == p
    assert curve.points[-1].mean == curve.fixed_score == accuracy(fixed, x, y)
    assert abs(curve.fixed_score - accuracy(graph, x, y)) <= 0.005  # 16 bits lose (almost) nothing
    by_p = {q.p_retain: q.mean for q in curve.points}
    assert by_p[0.9] < by_p[1.0] - 0.3  # clearly below
    low = np.mean([by_p[v] for v in (0.9, 0.92, 0.94)])
    high = np.mean([by_p[v] for v in (0.96, 0.98)])
    assert low < high < by_p[1.0]  # monotone-ish: falls as p_retain drops


def test_parse_p_retain():
    assert parse_p_retain("0.9..1.0") == pytest.approx([0.9 + i / 100 for i in range(11)])
    assert parse_p_retain("0.9..1.0:0.05") == pytest.approx([0.9, 0.95, 1.0])
    assert parse_p_retain("1,0.5,0.5") == [0.5, 1.0]
    for bad in ("0.9..", "1.0..0.9", "0.5,2", "x", ""):
        with pytest.raises(LpdcError, match="p-retain"):
            parse_p_retain(bad)


def test_cli_agreement_without_labels(capsys):
    code = main(["analyze", "zoo:lenet", "--faults", "retention", "--p-retain", "0.9,1.0", "--trials", "1", "--json"])
    out = json.loads(capsys.readouterr().out)["faults"]
    assert code == 0 and out["metric"] == "agreement" and out["bits"] == 16
    assert [p["p_retain"] for p in out["points"]] == [0.9, 1.0] and out["points"][1]["mean"] == 1.0
    assert out["points"][0]["mean"] < 1.0


def test_cli_accuracy_with_labelled_data_and_plot(capsys, tmp_path, digits):
    graph, (x, y) = digits
    lpdc.save(graph, tmp_path / "digits")
    np.savez(tmp_path / "test.npz", x=x[:300], y=y[:300])
    code = main(["analyze", str(tmp_path / "digits"), "--faults", "retention", "--p-retain", "0.95..1.0:0.05",
                 "--data", str(tmp_path / "test.npz"), "--plot", str(tmp_path / "curve.png"), "-q"])
    out = capsys.readouterr().out
    assert code == 0 and "top-1 accuracy" in out and "1.000" in out
    assert mpimg.imread(tmp_path / "curve.png").shape[0] > 100
    np.savez(tmp_path / "bad.npz", x=x[:10, :, :4])
    bad = ["analyze", str(tmp_path / "digits"), "--faults", "retention", "--data", str(tmp_path / "bad.npz")]
    assert main(bad) == 1
    assert "takes [N, 1, 8, 8]" in capsys.readouterr().err
