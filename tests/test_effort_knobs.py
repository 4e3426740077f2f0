"""Effort knobs (SPET, SDSS, SFMA) on the NumPy backend, each against an independent loop oracle.

Knobs off must be bit-identical to the reference; the counters must add up (dense = performed +
skipped) and match the analyzer's MAC count; unsupported layers must be refused by name.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.backends.numpy.approx import (
    ApproxExecutable,
    EffortConfig,
    KnobSettings,
    from_json,
    load_config,
    save_config,
    to_json,
)
from lpdc.backends.numpy.approx.sdss import sampling_plan
from lpdc.errors import LpdcError, LpdcUnsupportedError
from lpdc.ir import Graph, TensorType
from lpdc.tools.analyze import analyze
from lpdc.tools.digits_cnn import train_digits_cnn


def conv_graph(x_shape=(2, 2, 6, 6), out_ch=3, pad=1, activation="relu", seed=0, group=1) -> Graph:
    rng = np.random.default_rng(seed)
    g = Graph("small")
    x = g.add_input("x", TensorType(x_shape))
    w = g.add_const(rng.standard_normal((out_ch, x_shape[1] // group, 3, 3)).astype(np.float32), "w")
    b = g.add_const(rng.standard_normal(out_ch).astype(np.float32) * 0.1, "b")
    g.set_outputs([g.op("conv", x, w, b, name="conv", pad=[pad] * 4, activation=activation, group=group)])
    return g


def run(exe, x: np.ndarray) -> np.ndarray:
    return exe.run({"x": x})[exe.graph.outputs[0].name]


def windows(x: np.ndarray, pad: int) -> np.ndarray:
    """Naive im2col: (N, OH, OW, C*3*3) for a 3x3 stride-1 conv."""
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, w = xp.shape
    out = np.zeros((n, h - 2, w - 2, c * 9), np.float64)
    for i in range(h - 2):
        for j in range(w - 2):
            out[:, i, j] = xp[:, :, i:i + 3, j:j + 3].reshape(n, -1)
    return out


@pytest.fixture(scope="module")
def digits():
    graph, (x, y) = train_digits_cnn(seed=0)
    return graph, x[:150]


def test_knobs_off_is_bit_identical_to_the_reference(digits):
    graph, x = digits
    off = EffortConfig({name: KnobSettings() for name in ("conv1", "conv2", "fc")})
    exe = ApproxExecutable(graph, off)
    np.testing.assert_array_equal(run(exe, x), run(compile_numpy(graph), x))
    t = exe.total()
    assert t.dense_macs == t.macs == analyze(graph).total.macs == 150 * 23680
    assert t.overhead == 0 and t.reduction == 1.0


def test_engine_with_knobs_off_matches_reference_and_analyzer(digits):
    graph, x = digits
    exe = ApproxExecutable(graph, force_engine=True)
    ref = run(compile_numpy(graph), x)
    got = run(exe, x)
    assert np.max(np.abs(got - ref)) <= 1e-4 * np.max(np.abs(ref))
    per_layer = {s.name: s.macs for s in analyze(graph).layers}
    assert {k: c.dense_macs for k, c in exe.counts.items()} == {k: per_layer[k] for k in exe.counts}
    assert all(c.macs == c.dense_macs for c in exe.counts.values())


@pytest.mark.parametrize("threshold", [-0.3, 0.0, 0.4])
def test_spet_matches_a_loop_oracle(threshold):
    g = conv_graph()
    x = np.random.default_rng(1).standard_normal((2, 2, 6, 6)).astype(np.float32)
    exe = ApproxExecutable(g, EffortConfig(conv=KnobSettings(spet_threshold=threshold)))
    got = run(exe, x)
    w, b = g.params["w"].reshape(3, -1).astype(np.float64), g.params["b"].astype(np.float64)
    cols = windows(x, 1)
    k, head = w.shape[1], math.ceil(0.5 * w.shape[1])
    want = np.zeros(got.shape)
    dead = 0
    for o in range(3):
        order = np.argsort(-np.abs(w[o]), kind="stable")[:head]
        partial = b[o] + cols[..., order] @ w[o, order]
        full = np.maximum(b[o] + cols @ w[o], 0)
        want[:, o] = np.where(partial < threshold, 0.0, full)
        dead += int(np.sum(partial < threshold))
    np.testing.assert_allclose(got, want, atol=1e-5)
    c = exe.counts["conv"]
    neurons = got.size
    assert c.terminated == dead > 0
    assert c.macs == neurons * head + (neurons - dead) * (k - head)
    assert c.skipped_spet == dead * (k - head) and c.overhead == neurons
    assert c.dense_macs == c.macs + c.skipped_spet


def test_spet_extremes():
    g = conv_graph()
    x = np.random.default_rng(2).standard_normal((2, 2, 6, 6)).astype(np.float32)
    ref = run(compile_numpy(g), x)
    never = ApproxExecutable(g, EffortConfig(conv=KnobSettings(spet_threshold=-math.inf)))
    np.testing.assert_allclose(run(never, x), ref, atol=1e-5)
    assert never.counts["conv"].terminated == 0
    always = ApproxExecutable(g, EffortConfig(conv=KnobSettings(spet_threshold=math.inf, spet_fraction=0.25)))
    assert not run(always, x).any()
    assert always.counts["conv"].macs == ref.size * math.ceil(0.25 * 18)


def test_sdss_plan_neighbours():
    plan = sampling_plan(4, 4, 2)
    assert plan.sampled.tolist() == [0, 2, 8, 10]
    nb = {int(p): sorted(set(plan.neighbours[i, :plan.count[i]].tolist())) for i, p in enumerate(plan.others)}
    assert nb[1] == [0, 2] and nb[4] == [0, 8] and nb[5] == [0, 2, 8, 10]
    assert nb[3] == [2] and nb[15] == [10] and nb[7] == [2, 10]  # far border: one side only


def test_sdss_interpolates_everything_with_open_thresholds():
    g = conv_graph(x_shape=(1, 2, 5, 5))
    x = np.random.default_rng(3).standard_normal((1, 2, 5, 5)).astype(np.float32)
    exe = ApproxExecutable(g, EffortConfig(conv=KnobSettings(sdss_period=2, sdss_max=math.inf, sdss_delta=math.inf)))
    got, ref = run(exe, x), run(compile_numpy(g), x)
    plan = sampling_plan(5, 5, 2)
    flat_got, flat_ref = got.reshape(1, 3, 25), ref.reshape(1, 3, 25)
    np.testing.assert_allclose(flat_got[..., plan.sampled], flat_ref[..., plan.sampled], atol=1e-5)
    for i, p in enumerate(plan.others):
        nbs = plan.neighbours[i, :plan.count[i]]
        np.testing.assert_allclose(flat_got[..., p], flat_ref[..., nbs].mean(axis=-1), atol=1e-5)
    c = exe.counts["conv"]
    assert c.interpolated == 3 * len(plan.others) and c.macs == 3 * len(plan.sampled) * 18
    assert c.skipped_sdss == 3 * len(plan.others) * 18


def test_sdss_is_exact_on_a_linear_ramp_and_closed_thresholds_compute_all():
    g = conv_graph(x_shape=(1, 1, 9, 9), out_ch=2, pad=0, activation="none")
    ramp = (np.arange(9)[:, None] * 0.5 + np.arange(9)[None, :] * 0.25).astype(np.float32)[None, None]
    ref = run(compile_numpy(g), ramp)
    open_ = ApproxExecutable(g, EffortConfig(conv=KnobSettings(sdss_period=2, sdss_max=1e9, sdss_delta=1e9)))
    np.testing.assert_allclose(run(open_, ramp), ref, atol=1e-4)  # a linear map is its neighbours' mean
    closed = ApproxExecutable(g, EffortConfig(conv=KnobSettings(sdss_period=2, sdss_max=-1e9, sdss_delta=0)))
    np.testing.assert_allclose(run(closed, ramp), ref, atol=1e-4)
    c = closed.counts["conv"]
    assert c.interpolated == 0 and c.macs == c.dense_macs and c.overhead > 0


def test_sfma_is_exact_on_constant_maps_without_padding():
    g = conv_graph(x_shape=(2, 2, 6, 6), pad=0, activation="none")
    x = np.broadcast_to(np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)[:, :, None, None], (2, 2, 6, 6)).copy()
    exe = ApproxExecutable(g, EffortConfig(conv=KnobSettings(sfma_variance=0.0)))
    np.testing.assert_allclose(run(exe, x), run(compile_numpy(g), x), atol=1e-5)
    c = exe.counts["conv"]
    assert c.macs == 0 and c.skipped_sfma == c.dense_macs and c.approximated_maps == 2 * 3 * 2


def test_sfma_thresholds_gate_by_variance_and_significance():
    g = conv_graph(x_shape=(1, 2, 6, 6))
    rng = np.random.default_rng(4)
    x = np.stack([np.full((6, 6), 0.7), rng.standard_normal((6, 6))])[None].astype(np.float32)
    w = g.params["w"]
    sig = np.abs(w).sum(axis=(2, 3))[:, 0]  # significance of map 0 per output channel
    cut = float(np.median(sig))
    exe = ApproxExecutable(g, EffortConfig(conv=KnobSettings(sfma_variance=1e-6, sfma_significance=cut)))
    got = run(exe, x)
    # oracle: map 0 of output channel o is replaced by mean * sum(w) when sig <= cut
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (1, 1), (1, 1)))
    want = np.zeros(got.shape)
    for o in range(3):
        for i in range(6):
            for j in range(6):
                win = xp[0, :, i:i + 3, j:j + 3]
                exact1 = np.sum(win[1] * w[o, 1])
                map0 = 0.7 * w[o, 0].sum() if sig[o] <= cut else np.sum(win[0] * w[o, 0])
                want[0, o, i, j] = max(g.params["b"][o] + exact1 + map0, 0)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert exe.counts["conv"].approximated_maps == int(np.sum(sig <= cut))


def test_combined_counters_add_up(digits):
    graph, x = digits
    config = EffortConfig(conv1=KnobSettings(sdss_period=2, sdss_max=0.05, sdss_delta=0.05),
                          conv2=KnobSettings(spet_threshold=0.0, sfma_variance=0.05))
    exe = ApproxExecutable(graph, config)
    run(exe, x)
    for c in exe.counts.values():
        assert c.dense_macs == c.macs + c.skipped_sdss + c.skipped_sfma + c.skipped_spet
    c1, c2 = exe.counts["conv1"], exe.counts["conv2"]
    assert c1.interpolated > 0 and c2.terminated > 0 and c2.approximated_maps > 0
    assert exe.total().dense_macs == 150 * 23680 and exe.total().reduction > 1.2
    exe.reset_counts()
    assert exe.total().macs == 0


def test_unsupported_layers_are_refused_by_name(digits):
    graph, _ = digits
    with pytest.raises(LpdcError, match="'nope'.*conv1, conv2, fc"):
        ApproxExecutable(graph, EffortConfig(nope=KnobSettings(spet_threshold=0.0)))
    with pytest.raises(LpdcUnsupportedError, match="layer 'fc'.*SDSS"):
        ApproxExecutable(graph, EffortConfig(fc=KnobSettings(sdss_period=2)))
    with pytest.raises(LpdcUnsupportedError, match="layer 'fc'.*saturating"):
        ApproxExecutable(graph, EffortConfig(fc=KnobSettings(spet_threshold=0.0)))
    with pytest.raises(LpdcUnsupportedError, match="group 2"):
        ApproxExecutable(conv_graph(group=2, x_shape=(1, 4, 6, 6), out_ch=4),
                         EffortConfig(conv=KnobSettings(spet_threshold=0.0)))
    with pytest.raises(LpdcError, match="sdss_period"):
        KnobSettings(sdss_period=0)
    with pytest.raises(LpdcError, match="spet_fraction"):
        KnobSettings(spet_fraction=0.0)


def test_config_json_round_trip(tmp_path):
    config = EffortConfig(conv=KnobSettings(spet_threshold=-math.inf, sdss_period=2, sdss_max=0.5,
                                            sfma_variance=0.1))
    assert from_json(to_json(config)) == config
    assert load_config(save_config(config, tmp_path / "effort.json")) == config
    with pytest.raises(LpdcError, match="unknown knob"):
        from_json({"format": "lpdc-effort-config-1", "layers": {"conv": {"speed": 1}}})
    with pytest.raises(LpdcError, match="not an effort config"):
        from_json({"layers": {}})
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(LpdcError, match="bad.json"):
        load_config(tmp_path / "bad.json")
