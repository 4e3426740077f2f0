"""Caffe-specific layer semantics against values computed by hand from Caffe's layer code.

Pooling output sizes (ceil rounding, pad clipping) and AVE divisors, LRN in both regions, Eltwise
coefficients, BatchNorm's moving-average factor blob, PriorBox boxes and DetectionOutput decoding,
NMS, thresholds and keep_top_k.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from caffe_util import input_layer, load_text, run


# ---- Pooling -------------------------------------------------------------------------------------
def _pool(tmp_path, shape, param: str, x):
    g = load_text(tmp_path, input_layer({"data": shape}) +
                  f'layer {{ name: "pool" type: "Pooling" bottom: "data" top: "pool" pooling_param {{ {param} }} }}')
    return g.outputs[0].type.shape, run(g, data=x)["pool"]


def test_max_pool_rounds_up_on_even_input(tmp_path):
    # 6x6, kernel 3, stride 2: Caffe gives ceil(3/2)+1 = 3 (floor would give 2); the last window
    # covers rows/cols 4..5 only.
    x = np.arange(36, dtype=np.float32).reshape(1, 1, 6, 6)
    shape, y = _pool(tmp_path, [1, 1, 6, 6], "pool: MAX kernel_size: 3 stride: 2", x)
    assert shape == (1, 1, 3, 3)
    np.testing.assert_array_equal(y[0, 0], [[14, 16, 17], [26, 28, 29], [32, 34, 35]])


@pytest.mark.parametrize(("size", "k", "s", "pad", "want"), [
    (5, 2, 2, 1, 3),    # ceil(5/2)+1 = 4, but window 3 would start at 6 >= 5+1: clipped to 3
    (7, 3, 2, 0, 3),    # odd input, exact fit
    (13, 3, 2, 1, 7),   # ceil(12/2)+1 = 7, last start 12 < 14 kept
    (14, 3, 2, 0, 7),   # ceil(11/2)+1 = 7 (floor: 6)
    (112, 3, 2, 1, 57),  # torchvision's 56 needs floor mode; Caffe's default is ceil
])
def test_pool_output_sizes(tmp_path, size, k, s, pad, want):
    shape, _ = _pool(tmp_path, [1, 1, size, size], f"pool: MAX kernel_size: {k} stride: {s} pad: {pad}",
                     np.zeros((1, 1, size, size), np.float32))
    assert shape == (1, 1, want, want)


def test_floor_rounding_by_round_mode_and_fork_ceil_mode(tmp_path):
    for param in ("round_mode: FLOOR", "ceil_mode: false"):
        shape, _ = _pool(tmp_path, [1, 1, 112, 112], f"pool: MAX kernel_size: 3 stride: 2 pad: 1 {param}",
                         np.zeros((1, 1, 112, 112), np.float32))
        assert shape == (1, 1, 56, 56)


def test_ave_pool_divisor_counts_padding_but_not_the_ceil_overhang(tmp_path):
    # H = 4, kernel 3, stride 2, pad 1 -> 3 windows. Caffe's divisor is the window clipped to
    # [-pad, H+pad): rows {-1,0,1} -> 3, {1,2,3} -> 3, {3,4} -> 2 (row 5 is past the padding).
    x = np.array([1, 2, 3, 4], np.float32).reshape(1, 1, 4, 1)
    shape, y = _pool(tmp_path, [1, 1, 4, 1], "pool: AVE kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 1", x)
    assert shape == (1, 1, 3, 1)
    np.testing.assert_allclose(y.reshape(-1), [(0 + 1 + 2) / 3, (2 + 3 + 4) / 3, (4 + 0) / 2], rtol=1e-6)


def test_ave_pool_2d_with_clipped_windows(tmp_path):
    # 3x3, kernel 2, stride 2, pad 1: ceil(3/2)+1 = 3 clipped to 2; every window's divisor is 4.
    x = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    shape, y = _pool(tmp_path, [1, 1, 3, 3], "pool: AVE kernel_size: 2 stride: 2 pad: 1", x)
    assert shape == (1, 1, 2, 2)
    np.testing.assert_allclose(y[0, 0], [[0 / 4, (1 + 2) / 4], [(3 + 6) / 4, (4 + 5 + 7 + 8) / 4]], rtol=1e-6)


def test_global_pooling(tmp_path):
    x = np.arange(24, dtype=np.float32).reshape(1, 2, 3, 4)
    shape, y = _pool(tmp_path, [1, 2, 3, 4], "pool: AVE global_pooling: true", x)
    assert shape == (1, 2, 1, 1)
    np.testing.assert_allclose(y.reshape(-1), [5.5, 17.5])


# ---- LRN -----------------------------------------------------------------------------------------
def _lrn(tmp_path, shape, param, x):
    g = load_text(tmp_path, input_layer({"data": shape}) +
                  f'layer {{ name: "norm" type: "LRN" bottom: "data" top: "norm" lrn_param {{ {param} }} }}')
    return run(g, data=x)["norm"]


def test_lrn_within_channel_uses_shift_one_and_ignores_k(tmp_path):
    # y = x * (1 + alpha/size^2 * sum of x^2 over the zero-padded 3x3 window)^-beta; k is unused.
    x = np.array([[1, 2, 0], [0, 1, 0], [0, 0, 3]], np.float32).reshape(1, 1, 3, 3)
    y = _lrn(tmp_path, [1, 1, 3, 3], "local_size: 3 alpha: 0.9 beta: 0.5 k: 7 norm_region: WITHIN_CHANNEL", x)[0, 0]
    assert y[1, 1] == pytest.approx(1 * (1 + 0.1 * 15) ** -0.5, rel=1e-5)  # window holds 1+4+1+9
    assert y[0, 0] == pytest.approx(1 * (1 + 0.1 * 6) ** -0.5, rel=1e-5)  # 1+4+0+1
    assert y[0, 1] == pytest.approx(2 * (1 + 0.1 * 6) ** -0.5, rel=1e-5)  # 1+4+0+0+1+0
    assert y[2, 2] == pytest.approx(3 * (1 + 0.1 * 10) ** -0.5, rel=1e-5)  # 1+0+0+9
    assert y[0, 2] == 0


def test_lrn_across_channels_divides_alpha_by_size(tmp_path):
    # y_c = x_c / (k + alpha/size * sum_{c-1..c+1} x^2)^beta with alpha/size = 1, k = 2, beta = 1.
    x = np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1)
    y = _lrn(tmp_path, [1, 3, 1, 1], "local_size: 3 alpha: 3 beta: 1 k: 2", x)
    np.testing.assert_allclose(y.reshape(-1), [1 / (2 + 5), 2 / (2 + 14), 3 / (2 + 13)], rtol=1e-6)


# ---- Eltwise -------------------------------------------------------------------------------------
@pytest.mark.parametrize(("param", "want"), [
    ("operation: SUM coeff: 2 coeff: -0.5", [2 * 1 - 0.5 * 4, 2 * -2 - 0.5 * 6]),
    ("operation: SUM", [5, 4]),
    ("operation: PROD", [4, -12]),
    ("operation: MAX", [4, 6]),
])
def test_eltwise(tmp_path, param, want):
    g = load_text(tmp_path, input_layer({"a": [1, 2], "b": [1, 2]}) +
                  f'layer {{ name: "e" type: "Eltwise" bottom: "a" bottom: "b" top: "e" eltwise_param {{ {param} }} }}')
    np.testing.assert_allclose(run(g, a=[[1, -2]], b=[[4, 6]])["e"], [want])


# ---- BatchNorm -----------------------------------------------------------------------------------
_BN = ('layer { name: "bn" type: "BatchNorm" bottom: "data" top: "data" batch_norm_param { eps: 0.001 } }\n'
       'layer { name: "sc" type: "Scale" bottom: "data" top: "data" scale_param { bias_term: true } }\n')


def test_batch_norm_divides_statistics_by_the_factor_blob(tmp_path):
    # Stored sums (mean*s, var*s) with s = 999.98 as Caffe's moving averages leave them.
    s = 999.98
    mean, var = np.array([1.0, -2.0]), np.array([4.0, 9.0])
    blobs = {"bn": [mean * s, var * s, [s]], "sc": [[2.0, 0.5], [0.25, -1.0]]}
    g = load_text(tmp_path, input_layer({"data": [1, 2, 1, 2]}) + _BN, blobs)
    x = np.array([[3.0, 0.0], [1.0, -2.0]], np.float32).reshape(1, 2, 1, 2)
    assert [v.name for v in g.outputs] == ["sc"]  # "data" names the input, so the output takes the layer's name
    y = run(g, data=x)["sc"].reshape(2, 2)
    want = [[2.0 * (3 - 1) / math.sqrt(4.001) + 0.25, 2.0 * (0 - 1) / math.sqrt(4.001) + 0.25],
            [0.5 * (1 + 2) / math.sqrt(9.001) - 1.0, 0.5 * (-2 + 2) / math.sqrt(9.001) - 1.0]]
    np.testing.assert_allclose(y, want, rtol=1e-5)


def test_batch_norm_zero_factor_means_zero_statistics(tmp_path):
    blobs = {"bn": [[5.0, 5.0], [7.0, 7.0], [0.0]], "sc": [[1.0, 1.0], [0.0, 0.0]]}
    g = load_text(tmp_path, input_layer({"data": [1, 2, 1, 1]}) + _BN, blobs)
    y = run(g, data=np.array([2.0, -4.0]).reshape(1, 2, 1, 1))[g.outputs[0].name].reshape(-1)
    np.testing.assert_allclose(y, [2 / math.sqrt(0.001), -4 / math.sqrt(0.001)], rtol=1e-5)


# ---- PriorBox ------------------------------------------------------------------------------------
_PRIOR = ('layer {{ name: "pb" type: "PriorBox" bottom: "feat" bottom: "data" top: "pb" prior_box_param {{ '
          'min_size: {min} max_size: 9 aspect_ratio: 2 flip: true {extra} variance: 0.1 variance: 0.1 '
          'variance: 0.2 variance: 0.2 }} }}')


_PRIOR_INPUT = input_layer({"feat": [1, 1, 2, 2], "data": [1, 3, 8, 8]})


@pytest.mark.parametrize("min_size", ["4", "4.9"])  # Caffe truncates sizes to int: 4.9 acts as 4
def test_prior_box_boxes(tmp_path, min_size):
    g = load_text(tmp_path, _PRIOR_INPUT + _PRIOR.format(min=min_size, extra=""))
    assert g.outputs[0].type.shape == (1, 2, 2 * 2 * 4 * 4)  # 4 cells x 4 priors x 4 coordinates
    out = run(g, feat=np.zeros((1, 1, 2, 2)), data=np.zeros((1, 3, 8, 8)))["pb"]
    boxes = out[0, 0].reshape(2, 2, 4, 4)  # (row, col, prior, coordinate)
    r2 = 4 * math.sqrt(2)  # the ratio-2 box is 4*sqrt(2) wide, 4/sqrt(2) tall
    # Cell (0, 0) is centred at (2, 2) in an 8x8 image (step 8/2 = 4, offset 0.5).
    np.testing.assert_allclose(boxes[0, 0], np.array([
        [0, 0, 4, 4],                                          # min size 4
        [2 - 3, 2 - 3, 2 + 3, 2 + 3],                          # sqrt(4*9) = 6
        [2 - r2 / 2, 2 - r2 / 4, 2 + r2 / 2, 2 + r2 / 4],      # ratio 2
        [2 - r2 / 4, 2 - r2 / 2, 2 + r2 / 4, 2 + r2 / 2],      # ratio 1/2 (flip)
    ]) / 8, atol=1e-6)
    # Cell (1, 0): centre (2, 6); the boxes move down by 4/8.
    np.testing.assert_allclose(boxes[1, 0], boxes[0, 0] + [0, 0.5, 0, 0.5], atol=1e-6)
    np.testing.assert_allclose(out[0, 1].reshape(-1, 4), np.tile([0.1, 0.1, 0.2, 0.2], (16, 1)), atol=1e-7)


def test_prior_box_clip_and_explicit_step(tmp_path):
    g = load_text(tmp_path, _PRIOR_INPUT + _PRIOR.format(min="4", extra="clip: true step: 3 offset: 0"))
    out = run(g, feat=np.zeros((1, 1, 2, 2)), data=np.zeros((1, 3, 8, 8)))["pb"]
    boxes = out[0, 0].reshape(2, 2, 4, 4)
    np.testing.assert_allclose(boxes[0, 0, 0], [0, 0, 2 / 8, 2 / 8], atol=1e-6)  # centre (0,0), clipped
    np.testing.assert_allclose(boxes[1, 1, 0], [1 / 8, 1 / 8, 5 / 8, 5 / 8], atol=1e-6)  # centre (3,3)
    assert out[0, 0].min() >= 0 and out[0, 0].max() <= 1


# ---- DetectionOutput -----------------------------------------------------------------------------
def _detect(tmp_path, priors, loc, conf, classes, param):
    p = len(priors)
    prior = np.stack([np.asarray(priors, np.float32).reshape(-1), np.tile([0.1, 0.1, 0.2, 0.2], p)])[None]
    g = load_text(tmp_path, input_layer({"loc": [1, p * 4], "conf": [1, p * classes], "prior": [1, 2, p * 4]}) +
                  'layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "prior" '
                  f'top: "det" detection_output_param {{ num_classes: {classes} {param} }} }}')
    out = run(g, loc=np.asarray(loc, np.float32).reshape(1, -1), conf=np.asarray(conf, np.float32).reshape(1, -1),
              prior=prior)["det"]
    return out[0, 0]


_A, _B, _C = [0, 0, 0.5, 0.5], [0.05, 0.05, 0.55, 0.55], [0.6, 0.6, 0.9, 0.9]  # IoU(A,B) = 0.68, C apart
_CONF = [[0.1, 0.9, 0.0], [0.2, 0.7, 0.1], [0.3, 0.4, 0.3]]  # rows: priors A, B, C; columns: classes
_NMS = ("code_type: CORNER variance_encoded_in_target: true nms_param { nms_threshold: 0.45 } "
        "confidence_threshold: 0.05")


def test_detection_output_per_class_nms(tmp_path):
    rows = _detect(tmp_path, [_A, _B, _C], np.zeros(12), _CONF, 3, _NMS)
    # keep_top_k -1: room for 3 priors x 2 foreground classes. Class 1: A (0.9) suppresses B (0.7,
    # IoU 0.68 > 0.45), C (0.4) stays. Class 2: A scores 0.0 <= 0.05; C (0.3) and B (0.1) do not overlap.
    want = [[0, 1, 0.9, *_A], [0, 1, 0.4, *_C], [0, 2, 0.3, *_C], [0, 2, 0.1, *_B]]
    assert rows.shape == (6, 7)
    np.testing.assert_allclose(rows[:4], want, atol=1e-6)
    assert (rows[4:] == -1).all()


def test_detection_output_keep_top_k_and_top_k(tmp_path):
    rows = _detect(tmp_path, [_A, _B, _C], np.zeros(12), _CONF, 3, _NMS + " keep_top_k: 3")
    # The best 3 over all classes (0.9, 0.4, 0.3), regrouped by label.
    np.testing.assert_allclose(rows, [[0, 1, 0.9, *_A], [0, 1, 0.4, *_C], [0, 2, 0.3, *_C]], atol=1e-6)
    rows = _detect(tmp_path, [_A, _B, _C], np.zeros(12), _CONF, 3, _NMS.replace("}", "top_k: 1 }"))
    # top_k 1 keeps only each class's best candidate before NMS: A for class 1, C for class 2.
    assert rows.shape == (2, 7)
    np.testing.assert_allclose(rows, [[0, 1, 0.9, *_A], [0, 2, 0.3, *_C]], atol=1e-6)


def test_detection_output_threshold_leaves_caffes_placeholder_row(tmp_path):
    rows = _detect(tmp_path, [_A, _B, _C], np.zeros(12), _CONF, 3, _NMS.replace("0.05", "0.95"))
    np.testing.assert_array_equal(rows[0], [0, -1, -1, -1, -1, -1, -1])
    assert (rows[1:] == -1).all()


def test_detection_output_decodes_center_size_with_variance(tmp_path):
    # Prior centre (0.4, 0.3), size 0.4 x 0.2; variances 0.1, 0.1, 0.2, 0.2.
    loc = [1.0, -2.0, 5 * math.log(2), 0.0]  # dx, dy, log-width (doubles the width), log-height
    rows = _detect(tmp_path, [[0.2, 0.2, 0.6, 0.4]], loc, [[0.2, 0.8]], 2,
                   "code_type: CENTER_SIZE nms_param { nms_threshold: 0.45 } confidence_threshold: 0.01")
    cx, cy, w, h = 0.4 + 0.1 * 1.0 * 0.4, 0.3 + 0.1 * -2.0 * 0.2, 0.8, 0.2
    np.testing.assert_allclose(rows[0], [0, 1, 0.8, cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], atol=1e-6)


def test_detection_output_corner_decoding_scales_by_variance(tmp_path):
    rows = _detect(tmp_path, [_A], [1.0, 1.0, -1.0, 2.0], [[0.0, 1.0]], 2,
                   "code_type: CORNER nms_param { nms_threshold: 0.45 }")
    np.testing.assert_allclose(rows[0], [0, 1, 1.0, 0 + 0.1, 0 + 0.1, 0.5 - 0.2, 0.5 + 0.4], atol=1e-6)


def test_detection_output_per_class_locations_and_batch(tmp_path):
    # share_location false: loc holds one box offset per class (background's is ignored); image 1
    # has nothing above the threshold, so its rows stay -1 after image 0's detections.
    prior = np.stack([np.array(_A + _C, np.float32), np.tile([0.1, 0.1, 0.2, 0.2], 2)])[None]
    loc = np.zeros((2, 2, 3, 4), np.float32)
    loc[0, 0, 1] = [0.1, 0.0, 0.1, 0.0]  # image 0, prior A, class 1 moves right by 0.1
    loc[0, 0, 0] = [9, 9, 9, 9]          # background offsets never matter
    conf = np.full((2, 2, 3), 0.2, np.float32)
    conf[0] = [[0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]
    g = load_text(tmp_path, input_layer({"loc": [2, 24], "conf": [2, 6], "prior": [1, 2, 8]}) +
                  'layer { name: "det" type: "DetectionOutput" bottom: "loc" bottom: "conf" bottom: "prior" '
                  'top: "det" detection_output_param { num_classes: 3 share_location: false code_type: CORNER '
                  'variance_encoded_in_target: true nms_param { nms_threshold: 0.45 } confidence_threshold: 0.5 } }')
    rows = run(g, loc=loc.reshape(2, -1), conf=conf.reshape(2, -1), prior=prior)["det"][0, 0]
    assert rows.shape == (2 * 2 * 2, 7)  # per image: 2 priors x 2 foreground classes
    np.testing.assert_allclose(rows[:2], [[0, 1, 0.8, 0.1, 0, 0.6, 0.5], [0, 2, 0.8, *_C]], atol=1e-6)
    assert (rows[2:] == -1).all()
