"""Quantization building blocks: integer kernels against a float simulation, calibration ranges,
the [IL.FL] search, k-means codebooks, and bad input (each an LpdcError, never a raw traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.backends.numpy.im2col import conv2d_im2col
from lpdc.errors import LpdcError
from lpdc.ir import Graph, QuantParams, TensorType
from lpdc.ir.ops._shape import pads4, pair
from lpdc.passes.quantize import QuantConfig, calibrate, quantize
from lpdc.passes.quantize.calibrate import Calibration
from lpdc.passes.quantize.fixed_point import best_frac
from lpdc.passes.quantize.int8 import quantize_multiplier
from lpdc.passes.quantize.kmeans import kmeans_codebook
from lpdc.passes.quantize.schemes import fixed_format
from lpdc.tools.cli import main
from lpdc.tools.digits_cnn import digits_graph, digits_split

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "digits_cnn_seed0.npz"


@pytest.fixture(scope="module")
def digits():
    with np.load(FIXTURE, allow_pickle=False) as f:
        graph = digits_graph({k: f[k] for k in f.files})
    split = digits_split(0)
    return graph, split, [{"x": split.x_train[i:i + 150]} for i in range(0, 450, 150)]


# ---- integer kernels -------------------------------------------------------------------------
def _requantize_graph(acc: np.ndarray, mult: list[int], shift: list[int]) -> Graph:
    g = Graph("rq")
    scale = tuple(m * 2.0 ** -s for m, s in zip(mult, shift, strict=True))  # exactly the integer ratio
    x = g.add_input("acc", TensorType(acc.shape, "i32", None, QuantParams(scale, (0,) * len(scale), 1)))
    y = g.op("requantize", x, dtype="i8", scale=[1.0], zero_point=[3], multiplier=mult, shift=shift)
    g.set_outputs([y])
    return g


def test_requantize_integer_mode_equals_float_rescale_bit_for_bit():
    rng = np.random.default_rng(0)
    acc = rng.integers(-2 ** 21, 2 ** 21, (2, 3, 50)).astype(np.int32)
    acc[0, 0, :8] = [1, 3, 5, -1, -3, 2 ** 20 + 1, -(2 ** 20) - 1, 0]  # exact .5 ties after shift 1 / 21
    mult, shift = [1, 1_500_000_001, 2 ** 30], [1, 38, 39]
    g = _requantize_graph(acc, mult, shift)
    integer = compile_numpy(g).run({"acc": acc})[g.outputs[0].name]
    float_node = _requantize_graph(acc, mult, shift)
    float_node.nodes[-1].attrs.update(multiplier=[], shift=[])  # same scales, float path of the kernel
    ref = compile_numpy(float_node).run({"acc": acc})[float_node.outputs[0].name]
    np.testing.assert_array_equal(integer, ref)
    assert list(integer[0, 0, :5]) == [3, 5, 5, 3, 1]  # half to even, plus the zero point 3


@pytest.mark.parametrize("ratio", [1e-9, 3.1e-5, 0.0123, 0.5, 0.99999, 1.7, 1234.5])
def test_quantize_multiplier_has_31_significant_bits(ratio):
    m, s = quantize_multiplier(ratio)
    assert 2 ** 30 <= m < 2 ** 31 and 0 <= s <= 62
    assert abs(m * 2.0 ** -s - ratio) <= ratio * 2.0 ** -30


def _float_simulation(q: Graph, node, x_q: np.ndarray) -> np.ndarray:
    """The layer recomputed in float64 from the dequantized integers it read."""
    def real(arr, t):
        bits = t.dtype[2:].split("_") if t.dtype.startswith("fx") else None
        if bits:
            return arr.astype(np.float64) * 2.0 ** -int(bits[1])
        s, z = np.asarray(t.quant.scale), np.asarray(t.quant.zero_point)
        if t.quant.axis is not None:
            shape = [1] * arr.ndim
            shape[t.quant.axis] = -1
            s, z = s.reshape(shape), z.reshape(shape)
        return (arr.astype(np.float64) - z) * s

    x = real(x_q, node.inputs[0].type)
    w = real(q.const_data(node.inputs[1]), node.inputs[1].type)
    b = real(q.const_data(node.inputs[2]), node.inputs[2].type)
    a = node.attrs
    if node.op == "conv":
        y = conv2d_im2col(x, w, pair(a["stride"], "s"), pads4(a["pad"]), pair(a["dilation"], "d"), a["group"])
        y = y + b[:, None, None]
    else:
        y = x.reshape(len(x), -1) @ w.T + b
    return np.maximum(y, 0) if a["activation"] == "relu" else y


@pytest.mark.parametrize("scheme", ["int8", "fixed8"])
def test_integer_layers_equal_their_float_simulation(scheme, digits):
    graph, split, calib = digits
    q = quantize(graph, calib, scheme)
    seen: dict[str, np.ndarray] = {}

    def keep(node, outs) -> None:
        seen.update({v.name: o for v, o in zip(node.outputs, outs, strict=True)})

    compile_numpy(q).run({"x": split.x_test[:150]}, observer=keep)
    layers = [n for n in q.nodes if n.op in ("conv", "fully_connected") and n.output.type.dtype == "i32"]
    assert len(layers) == 3
    for node in layers:
        y = _float_simulation(q, node, seen[node.inputs[0].name])
        acc_t = node.output.type
        acc_scale = np.asarray(acc_t.quant.scale).reshape([1, -1] + [1] * (y.ndim - 2))
        np.testing.assert_array_equal(seen[node.output.name], np.rint(y / acc_scale))  # int32 accumulator
        user = node.output.users[0]
        if user.op != "requantize":  # the classifier: dequantized as it is
            continue
        t = user.output.type
        frac = int(t.dtype.split("_")[1]) if t.dtype.startswith("fx") else None
        scale, zp = (2.0 ** -frac, 0) if frac is not None else (t.quant.scale[0], t.quant.zero_point[0])
        info = np.iinfo(np.int8 if t.dtype != "u8" else np.uint8)
        want = np.clip(np.rint(y / scale) + zp, info.min, info.max)
        np.testing.assert_array_equal(seen[user.output.name], want)  # bit-exact requantization


# ---- calibration, fixed point, k-means -------------------------------------------------------
def test_calibration_ranges_by_method():
    cal = Calibration(momentum=0.5)
    rng = np.random.default_rng(0)
    batches = [rng.standard_normal(20000) for _ in range(3)]
    batches[1][0] = 40.0  # one outlier
    for b in batches:
        cal.record("v", b)
    lo, hi = cal.range("v", "minmax")
    assert (lo, hi) == (min(b.min() for b in batches), 40.0)
    ema = batches[0].max()
    for b in batches[1:]:
        ema += 0.5 * (b.max() - ema)
    assert cal.range("v", "ema")[1] == pytest.approx(ema)
    p_lo, p_hi = cal.range("v", "percentile", 99.0)
    assert 2.4 < p_hi < 2.8 and p_lo == -p_hi  # |x| 99th percentile of N(0, 1) is 2.58
    e_lo, e_hi = cal.range("v", "entropy", bits=8)
    assert 2.5 < e_hi < 20.0 and e_lo == max(lo, -e_hi)  # clips the outlier, keeps the bulk
    assert cal.samples("v").size <= 16384


def test_entropy_calibration_is_not_fooled_by_relu_zeros():
    cal = Calibration()
    x = np.abs(np.random.default_rng(1).standard_normal(40000))
    x[::2] = 0.0  # half exact zeros, as after a ReLU
    cal.record("r", x)
    lo, hi = cal.range("r", "entropy", bits=8)
    assert lo == 0.0 and hi > 0.75 * x.max()


def test_fixed_point_search_balances_range_and_resolution():
    w = np.linspace(-0.9, 0.9, 101)
    assert best_frac(w, 8) == 7  # 127/128 covers 0.9 without saturating
    assert best_frac(w * 10, 8) == 3
    outlier = np.concatenate([np.random.default_rng(0).standard_normal(5000) * 0.05, [3.0]])
    assert best_frac(outlier, 6) > best_frac(np.array([3.0]), 6)  # saturating one value pays off
    fmt = fixed_format(5, 3)
    assert fmt.dtype == "fx8_3" and fmt.clamped and fmt.real_bounds() == (-2.0, 1.875)


def test_kmeans_codebook_beats_uniform_and_reports_its_compression():
    w = np.random.default_rng(0).standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.1
    cb = kmeans_codebook(w, bits=4, centroid_bits=8)
    deq = cb.dequantize()
    assert deq.shape == w.shape and len(np.unique(deq)) <= 16
    assert cb.storage_bits == w.size * 4 + cb.centroids.size * 8
    assert cb.compression_ratio == pytest.approx(32 * w.size / cb.storage_bits)
    assert cb.compression_ratio > 7.5
    uniform = fixed_format(4, best_frac(w, 4)).fake(w)
    assert np.mean((deq - w) ** 2) < 0.8 * np.mean((uniform - w) ** 2)  # Lloyd-Max beats a uniform grid


def test_calibrate_observes_every_layer_input_and_output(digits):
    graph, _, calib = digits
    cal = calibrate(graph, calib)
    assert {"x", "conv1", "pool1", "conv2", "pool2", "logits"} <= set(cal.stats)
    assert cal.range("conv1")[0] == 0.0  # after the fused relu


# ---- bad input -----------------------------------------------------------------------------
def test_calibration_of_the_wrong_shape_is_an_lpdc_error(digits):
    graph, split, _ = digits
    for bad in ([{"x": split.x_train[:10]}], [{"y": split.x_train[:150]}], [split.x_train[:150]], [], "x"):
        with pytest.raises(LpdcError):
            quantize(graph, bad, "int8")


@pytest.mark.parametrize("scheme", ["fixed1", "fixed17", "int0", "int40", "kmeans9", "kmeans1", "float8", "bogus"])
def test_bit_widths_outside_2_to_16_are_lpdc_errors(scheme, digits):
    with pytest.raises(LpdcError):
        quantize(digits[0], digits[2], scheme)


@pytest.mark.parametrize("config", [
    {"layers": {"conv9": {"weights": {"kind": "fixed", "bits": 8}}}},  # a missing layer
    {"default": {"weights": {"kind": "fixed", "bits": 20}}},
    {"default": {"weights": {"kind": "fixed", "bits": 1}}},
    {"default": {"activations": {"kind": "kmeans", "bits": 4}}},
    {"default": {"weights": {"kind": "posit", "bits": 8}}},
    {"default": {"weigths": {"kind": "fixed", "bits": 8}}},
    {"default": {"weights": {"kind": "fixed", "bits": 8, "fl": 3}}},
    {"lowering": "magic"},
    {"format": "something-else"},
])
def test_bad_configurations_are_lpdc_errors(config, digits, tmp_path):
    with pytest.raises(LpdcError):
        quantize(digits[0], digits[2], config)
    path = tmp_path / "c.json"
    path.write_text(json.dumps(config))
    with pytest.raises(LpdcError, match="c.json|layer|bit|kind|variable|key|lowering|configuration"):
        quantize(digits[0], digits[2], path)


def test_missing_calibration_and_unreadable_configs_are_lpdc_errors(digits, tmp_path):
    graph = digits[0]
    with pytest.raises(LpdcError, match="calibration"):
        quantize(graph, None, "fixed8")  # activations need ranges
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(LpdcError):
        quantize(graph, None, tmp_path / "bad.json")
    with pytest.raises(LpdcError, match="not a quantizable layer"):
        QuantConfig.from_dict({"layers": {"pool1": {}}}).validate(graph)


def test_cli_reports_bad_quantization_input_without_traceback(capsys):
    assert main(["quantize", "digits", "--scheme", "fixed17", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "lpdc: error:" in err and "2-16" in err and "Traceback" not in err
