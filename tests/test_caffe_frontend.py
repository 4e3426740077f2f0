"""The Caffe frontend: file forms (V0/V1/V2, legacy inputs, caffemodel encodings), in-place layers,
phases, weights, the layer conversions' numerics, and errors that name file, layer and field."""

from __future__ import annotations

import warnings

import lpdc
import numpy as np
import pytest
from caffe_util import CORPUS, input_layer, load_text, run, write_net
from lpdc.errors import LpdcGraphError, LpdcParseError, LpdcTypeError, LpdcUnsupportedError
from lpdc.frontends.caffe import load_caffe
from lpdc.frontends.caffe.schema import message_class
from lpdc.ir import random_inputs
from lpdc.tools.caffe_weights import main as caffe_weights_main
from lpdc.tools.caffe_weights import random_caffemodel

LENET_BATCH = {"data": [2, 1, 28, 28]}  # the files say 64; two images are enough here
needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"Caffe corpus not found at {CORPUS}")

CONV_NET = input_layer({"data": [1, 2, 5, 5]}) + """
layer { name: "conv1" type: "Convolution" bottom: "data" top: "conv1"
  convolution_param { num_output: 3 kernel_size: 3 pad: 1 } }
layer { name: "relu1" type: "ReLU" bottom: "conv1" top: "conv1" }
layer { name: "fc" type: "InnerProduct" bottom: "conv1" top: "fc" inner_product_param { num_output: 4 } }
"""


# ---- forms of the same net -----------------------------------------------------------------------
@needs_corpus
@pytest.mark.parametrize("variant", ["lenet.v1.deploy", "lenet.v0.deploy"])
def test_old_lenets_equal_the_current_one_with_the_same_weights(tmp_path, variant):
    model = random_caffemodel(CORPUS / "lenet.deploy.prototxt", tmp_path / "lenet.caffemodel", seed=5)
    ref = lpdc.load(CORPUS / "lenet.deploy.prototxt", weights=model, shapes=LENET_BATCH)
    old = lpdc.load(CORPUS / f"{variant}.prototxt", weights=model, shapes=LENET_BATCH)
    assert [n.op for n in old.nodes] == [n.op for n in ref.nodes]
    x = random_inputs(ref)
    np.testing.assert_array_equal(run(old, **x)["prob"], run(ref, **x)["prob"])


@needs_corpus
def test_caffenet_v0_padding_v1_and_current_agree(tmp_path):
    small = {"data": [1, 3, 67, 67]}  # keeps fc6 small; every variant names its input "data"
    model = random_caffemodel(CORPUS / "caffenet.deploy.prototxt", tmp_path / "c.caffemodel", shapes=small)
    graphs = {v: lpdc.load(CORPUS / f"caffenet.{v}.prototxt", weights=model, shapes=small)
              for v in ("deploy", "v1.deploy", "v0.deploy", "v0_padding.deploy")}
    x = random_inputs(graphs["deploy"])
    ref = run(graphs["deploy"], **x)["prob"]
    for name, g in graphs.items():
        conv2 = next(n for n in g.nodes if n.name == "conv2")
        assert conv2.attrs["pad"] == [2, 2, 2, 2] and conv2.attrs["group"] == 2, name  # padding layer folded
        np.testing.assert_array_equal(run(g, **x)["prob"], ref, err_msg=name)


@needs_corpus
def test_legacy_input_forms(tmp_path):
    for name in ("alexnet.deploy", "alexnet.input_shape.deploy", "alexnet.v1.deploy", "alexnet_bn_cvgj.deploy"):
        g = load_caffe(CORPUS / f"{name}.prototxt", random_weights=True, shapes={"data": [1, 3, 99, 99]})
        assert [(v.name, v.type.shape) for v in g.inputs] == [("data", (1, 3, 99, 99))], name
    g = load_caffe(CORPUS / "vgg16.dummydata.deploy.prototxt", random_weights=True, shapes={"data": [1, 3, 32, 32]})
    assert [v.name for v in g.inputs] == ["data"]  # DummyData becomes the input; its label top is unused


@needs_corpus
def test_v1_caffemodel_legacy_shapes_and_double_data(tmp_path):
    ref = load_caffe(CORPUS / "lenet.deploy.prototxt", random_weights=True, seed=2, shapes=LENET_BATCH)
    x = random_inputs(ref)
    want = run(ref, **x)["prob"]
    for options in ({"v1": True}, {"legacy_shape": True}, {"double": True}):
        model = random_caffemodel(CORPUS / "lenet.deploy.prototxt", tmp_path / "m.caffemodel", seed=2, **options)
        stored = message_class("NetParameter").FromString(model.read_bytes())
        assert len(stored.layers if options.get("v1") else stored.layer) > 0
        g = load_caffe(CORPUS / "lenet.deploy.prototxt", weights=model, shapes=LENET_BATCH)
        np.testing.assert_array_equal(run(g, **x)["prob"], want, err_msg=str(options))


def test_unpacked_blob_data_is_read(tmp_path):
    # A caffemodel whose floats are written one by one (wire type 5) instead of packed.
    def ld(tag: bytes, payload: bytes) -> bytes:
        return tag + bytes([len(payload)]) + payload

    floats = b"".join(b"\x2d" + np.float32(v).tobytes() for v in (3.0, -1.0))
    blob = ld(b"\x3a", b"\x0a\x01\x02") + floats  # shape { dim: 2 }, then data
    layer = ld(b"\x0a", b"b") + ld(b"\x12", b"Bias") + ld(b"\x3a", blob)
    model = tmp_path / "m.caffemodel"
    model.write_bytes(ld(b"\xa2\x06", layer))
    assert list(message_class("NetParameter").FromString(model.read_bytes()).layer[0].blobs[0].data) == [3.0, -1.0]
    proto = write_net(tmp_path, input_layer({"x": [1, 2]}) + 'layer { name: "b" type: "Bias" bottom: "x" top: "y" }')
    np.testing.assert_array_equal(run(load_caffe(proto, weights=model), x=[[1.0, 1.0]])["y"], [[4.0, 0.0]])


# ---- in-place layers, phases, training nets --------------------------------------------------------
def test_in_place_layers_become_ssa_values_named_after_the_blob(tmp_path):
    g = load_text(tmp_path, CONV_NET, random_weights=True)
    conv = next(n for n in g.nodes if n.op == "conv")
    relu = next(n for n in g.nodes if n.op == "relu")
    assert (conv.name, relu.name) == ("conv1", "relu1")
    assert relu.inputs[0] is conv.output and relu.output.name == "conv1"  # the last write keeps the blob name
    fc = next(n for n in g.nodes if n.op == "fully_connected")
    assert fc.inputs[0] is relu.output
    y = run(g, data=np.ones((1, 2, 5, 5)))["fc"]
    assert y.shape == (1, 4)


def test_phase_rules_keep_the_test_net(tmp_path):
    text = input_layer({"data": [1, 3]}) + """
layer { name: "a" type: "Power" bottom: "data" top: "y" power_param { scale: 2 } include { phase: TRAIN } }
layer { name: "b" type: "Power" bottom: "data" top: "y" power_param { scale: 3 } include { phase: TEST } }
layer { name: "c" type: "Power" bottom: "y" top: "y" power_param { shift: 1 } exclude { phase: TEST } }
layer { name: "d" type: "Power" bottom: "y" top: "y" power_param { shift: 10 } include { stage: "deploy" } }
layer { name: "e" type: "Power" bottom: "y" top: "y" power_param { shift: 100 } exclude { min_level: 1 } }
"""
    g = load_text(tmp_path, text)
    assert [n.name for n in g.nodes] == ["b", "e"]
    np.testing.assert_allclose(run(g, data=[[1, 2, 3]])["y"], [[103, 106, 109]])


@needs_corpus
def test_training_net_drops_data_and_loss_layers(tmp_path):
    with pytest.raises(LpdcParseError, match=r"layer 'mnist' \(Data\).*shapes=\{'data'"):
        load_caffe(CORPUS / "lenet.train_test.prototxt", random_weights=True)
    g = load_caffe(CORPUS / "lenet.train_test.prototxt", random_weights=True, shapes={"data": [2, 1, 28, 28]})
    assert [v.name for v in g.inputs] == ["data"] and [v.name for v in g.outputs] == ["ip2"]
    assert not any(n.op in ("softmax",) for n in g.nodes)  # SoftmaxWithLoss and Accuracy are gone


@needs_corpus
def test_siamese_towers_share_named_weights():
    g = load_caffe(CORPUS / "mnist_siamese.v1.train_test.prototxt", random_weights=True,
                   shapes={"pair_data": [3, 2, 28, 28]})
    img = np.random.default_rng(1).random((3, 1, 28, 28), np.float32)
    out = run(g, pair_data=np.concatenate([img, img], axis=1))
    np.testing.assert_array_equal(out["feat"], out["feat_p"])  # same image, same weights
    assert np.abs(out["feat"]).max() > 0


# ---- layer conversions --------------------------------------------------------------------------
def test_convolution_asymmetric_kernel_stride_pad_group_dilation(tmp_path):
    w = np.random.default_rng(0).standard_normal((4, 1, 3, 1)).astype(np.float32)
    b = np.array([0.5, -0.5, 1.0, 0.0], np.float32)
    text = input_layer({"data": [1, 2, 7, 4]}) + """
layer { name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param { num_output: 4 group: 2
  kernel_h: 3 kernel_w: 1 stride_h: 2 stride_w: 1 pad_h: 2 pad_w: 0 dilation: 2 } }"""
    g = load_text(tmp_path, text, {"c": [w, b]})
    x = np.random.default_rng(1).standard_normal((1, 2, 7, 4)).astype(np.float32)
    y = run(g, data=x)["c"]
    assert y.shape == (1, 4, (7 + 4 - 5) // 2 + 1, 4)
    xp = np.pad(x, ((0, 0), (0, 0), (2, 2), (0, 0)))
    for o in range(4):
        for i in range(y.shape[2]):
            rows = xp[0, o // 2, [2 * i, 2 * i + 2, 2 * i + 4], :]  # group o//2, dilation 2
            np.testing.assert_allclose(y[0, o, i], (w[o, 0, :, 0, None] * rows).sum(0) + b[o], rtol=1e-5)


def test_inner_product_axis_and_transpose(tmp_path):
    w = np.arange(12, dtype=np.float32).reshape(4, 3)  # transpose: stored (K=4, N=3)
    text = input_layer({"x": [2, 2, 2]}) + """layer { name: "ip" type: "InnerProduct" bottom: "x" top: "y"
  inner_product_param { num_output: 3 axis: 1 transpose: true bias_term: false } }"""
    g = load_text(tmp_path, text, {"ip": [w]})
    x = np.arange(8, dtype=np.float32).reshape(2, 2, 2)
    np.testing.assert_allclose(run(g, x=x)["y"], x.reshape(2, 4) @ w)


def test_deconvolution_matches_scatter_by_hand(tmp_path):
    w = np.array([[[[1, 2], [3, 4]]]], np.float32)  # (C_in=1, C_out=1, 2, 2)
    text = input_layer({"x": [1, 1, 2, 2]}) + """layer { name: "up" type: "Deconvolution" bottom: "x" top: "y"
  convolution_param { num_output: 1 kernel_size: 2 stride: 2 bias_term: false } }"""
    y = run(load_text(tmp_path, text, {"up": [w]}), x=[[[[1, 10], [100, 1000]]]])["y"][0, 0]
    np.testing.assert_array_equal(y, np.kron([[1, 10], [100, 1000]], [[1, 2], [3, 4]]))


def test_scale_bias_axes_and_second_bottom(tmp_path):
    text = input_layer({"x": [2, 3, 2], "s": [3, 2]}) + """
layer { name: "sc" type: "Scale" bottom: "x" top: "a" scale_param { axis: 1 num_axes: 2 bias_term: true } }
layer { name: "sb" type: "Scale" bottom: "x" bottom: "s" top: "b" }
layer { name: "bi" type: "Bias" bottom: "x" top: "c" bias_param { axis: -1 } }"""
    gamma, beta = np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((3, 2), np.float32)
    g = load_text(tmp_path, text, {"sc": [gamma, beta], "bi": [[5.0, -5.0]]})
    x = np.random.default_rng(0).standard_normal((2, 3, 2)).astype(np.float32)
    s = np.random.default_rng(1).standard_normal((3, 2)).astype(np.float32)
    out = run(g, x=x, s=s)
    np.testing.assert_allclose(out["a"], x * gamma + beta, rtol=1e-6)
    np.testing.assert_allclose(out["b"], x * s, rtol=1e-6)
    np.testing.assert_allclose(out["c"], x + [5.0, -5.0], rtol=1e-6)


def test_shape_layers(tmp_path):
    text = input_layer({"x": [2, 6, 2, 3]}) + """
layer { name: "r" type: "Reshape" bottom: "x" top: "r" reshape_param { shape { dim: 0 dim: 2 dim: -1 } } }
layer { name: "r2" type: "Reshape" bottom: "x" top: "r2"
  reshape_param { shape { dim: 3 dim: -1 } axis: 1 num_axes: 1 } }
layer { name: "f" type: "Flatten" bottom: "x" top: "f" flatten_param { axis: 2 } }
layer { name: "s" type: "Slice" bottom: "x" top: "s1" top: "s2" top: "s3"
  slice_param { slice_point: 1 slice_point: 4 } }
layer { name: "c" type: "Concat" bottom: "s3" bottom: "s1" top: "c" concat_param { concat_dim: 1 } }
layer { name: "p" type: "Permute" bottom: "x" top: "p" permute_param { order: 0 order: 2 order: 3 order: 1 } }
layer { name: "sp" type: "Split" bottom: "x" top: "sa" top: "sb" }
layer { name: "e" type: "Eltwise" bottom: "sa" bottom: "sb" top: "e" }"""
    x = np.arange(72, dtype=np.float32).reshape(2, 6, 2, 3)
    out = run(load_text(tmp_path, text), x=x)
    np.testing.assert_array_equal(out["r"], x.reshape(2, 2, 18))  # 0 copies N
    np.testing.assert_array_equal(out["r2"], x.reshape(2, 3, 2, 2, 3))  # only axis 1 (6) becomes 3 x 2
    np.testing.assert_array_equal(out["f"], x.reshape(2, 6, 6))
    np.testing.assert_array_equal(out["s2"], x[:, 1:4])
    np.testing.assert_array_equal(out["c"], np.concatenate([x[:, 4:], x[:, :1]], axis=1))
    np.testing.assert_array_equal(out["p"], x.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(out["e"], 2 * x)


def test_crop_to_reference_with_offsets(tmp_path):
    text = input_layer({"x": [1, 2, 6, 7], "ref": [1, 5, 3, 4]}) + """
layer { name: "crop" type: "Crop" bottom: "x" bottom: "ref" top: "y" crop_param { axis: 2 offset: 2 offset: 1 } }"""
    x = np.arange(84, dtype=np.float32).reshape(1, 2, 6, 7)
    out = run(load_text(tmp_path, text), x=x, ref=np.zeros((1, 5, 3, 4)))
    np.testing.assert_array_equal(out["y"], x[:, :, 2:5, 1:5])


@pytest.mark.parametrize(("layer", "fn"), [
    ('type: "Power" power_param { power: 2 scale: 0.5 shift: 1 }', lambda x: (1 + 0.5 * x) ** 2),
    ('type: "Exp" exp_param { base: 2 scale: 3 shift: -1 }', lambda x: 2.0 ** (-1 + 3 * x)),
    ('type: "Exp"', np.exp),
    ('type: "ELU" elu_param { alpha: 0.5 }', lambda x: np.where(x > 0, x, 0.5 * np.expm1(x))),
    ('type: "ReLU" relu_param { negative_slope: 0.1 }', lambda x: np.where(x > 0, x, 0.1 * x)),
    ('type: "AbsVal"', np.abs),
    ('type: "BNLL"', lambda x: np.log1p(np.exp(x))),
    ('type: "Sigmoid"', lambda x: 1 / (1 + np.exp(-x))),
    ('type: "TanH"', np.tanh),
    ('type: "Clip" clip_param { min: -0.5 max: 0.25 }', lambda x: np.clip(x, -0.5, 0.25)),
    ('type: "Dropout" dropout_param { dropout_ratio: 0.3 }', lambda x: x),
    ('type: "Softmax" softmax_param { axis: -1 }', lambda x: np.exp(x) / np.exp(x).sum(-1, keepdims=True)),
])
def test_elementwise_layers(tmp_path, layer, fn):
    g = load_text(tmp_path, input_layer({"x": [2, 5]}) + f'layer {{ name: "l" {layer} bottom: "x" top: "y" }}')
    x = np.linspace(-2, 2, 10, dtype=np.float32).reshape(2, 5)
    np.testing.assert_allclose(run(g, x=x)["y"], fn(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_prelu_and_normalize(tmp_path):
    text = input_layer({"x": [1, 2, 1, 2]}) + """
layer { name: "pr" type: "PReLU" bottom: "x" top: "p" }
layer { name: "ps" type: "PReLU" bottom: "x" top: "q" prelu_param { channel_shared: true } }
layer { name: "n" type: "Normalize" bottom: "x" top: "n" norm_param { across_spatial: false channel_shared: false } }"""
    g = load_text(tmp_path, text, {"pr": [[0.1, 0.5]], "ps": [[0.2]], "n": [[2.0, 3.0]]})
    x = np.array([[-1, 2], [3, -4]], np.float32).reshape(1, 2, 1, 2)
    out = run(g, x=x)
    np.testing.assert_allclose(out["p"].reshape(2, 2), [[-0.1, 2], [3, -2]], rtol=1e-6)
    np.testing.assert_allclose(out["q"].reshape(2, 2), [[-0.2, 2], [3, -0.8]], rtol=1e-6)
    norm = np.sqrt(np.array([1 + 9, 4 + 16]))
    np.testing.assert_allclose(out["n"].reshape(2, 2), [[2 * -1 / norm[0], 2 * 2 / norm[1]],
                                                       [3 * 3 / norm[0], 3 * -4 / norm[1]]], rtol=1e-5)


# ---- weights ----------------------------------------------------------------------------------------
def test_load_with_weights_and_random_weights_through_the_api(tmp_path):
    proto = write_net(tmp_path, CONV_NET)
    model = random_caffemodel(proto, tmp_path / "net.caffemodel", seed=7)
    a = lpdc.load(str(proto), weights=str(model))
    b = lpdc.load(str(proto), random_weights=True, seed=7)
    c = lpdc.load(str(proto), random_weights=True, seed=8)
    x = random_inputs(a)
    np.testing.assert_array_equal(run(a, **x)["fc"], run(b, **x)["fc"])
    assert not np.allclose(run(a, **x)["fc"], run(c, **x)["fc"])
    w = a.const_data(next(n for n in a.nodes if n.op == "conv").inputs[1])
    assert abs(float(w.std()) - np.sqrt(2 / 18)) < 0.1  # He scale: fan-in 2*3*3


def test_random_batch_norm_variances_are_positive(tmp_path):
    g = load_text(tmp_path, input_layer({"data": [1, 64, 2, 2]}) + _BN_ONLY, random_weights=True)
    var = g.const_data(next(n for n in g.nodes if n.op == "batch_norm").inputs[4])
    assert var.shape == (64,) and (var > 0).all()


_BN_ONLY = 'layer { name: "bn" type: "BatchNorm" bottom: "data" top: "bn" }'


def test_cli_writer(tmp_path):
    proto = write_net(tmp_path, CONV_NET)
    assert caffe_weights_main([str(proto), str(tmp_path / "w.caffemodel"), "--seed", "7", "--legacy-shape"]) == 0
    a = load_caffe(proto, weights=tmp_path / "w.caffemodel")
    b = load_caffe(proto, random_weights=True, seed=7)
    x = random_inputs(a)
    np.testing.assert_array_equal(run(a, **x)["fc"], run(b, **x)["fc"])


# ---- errors name the file, the layer and the field ----------------------------------------------
def test_unknown_layer_type(tmp_path):
    text = input_layer({"x": [1, 2]}) + 'layer { name: "odd" type: "Sigmoidd" bottom: "x" top: "y" }'
    with pytest.raises(LpdcUnsupportedError, match=r"net\.prototxt: layer 'odd'.*'Sigmoidd' \(field `type`\).*Sigmoid"):
        load_text(tmp_path, text)


def test_bottom_no_layer_produces(tmp_path):
    text = input_layer({"x": [1, 2]}) + 'layer { name: "r" type: "ReLU" bottom: "xx" top: "y" }'
    with pytest.raises(LpdcGraphError, match=r"net\.prototxt: layer 'r' \(ReLU\): bottom 'xx'.*'x'.*field `bottom`"):
        load_text(tmp_path, text)


def test_malformed_prototxt_names_line_and_column(tmp_path):
    text = input_layer({"x": [1, 2]}) + 'layer {\n  name: "r"\n  type: "ReLU"\n  bottom "x"\n}\n'
    with pytest.raises(LpdcParseError, match=r"net\.prototxt:5:\d+: malformed prototxt.*layer 'r'"):
        load_text(tmp_path, text)


def test_unknown_field_is_warned_and_skipped(tmp_path):
    text = input_layer({"x": [1, 2]}) + 'layer { name: "r" type: "ReLU" bottom: "x" top: "y" relu_param { fancy: 3 } }'
    with pytest.warns(UserWarning, match=r"net\.prototxt:2:\d+: field 'fancy' is not in Caffe's schema"):
        g = load_text(tmp_path, text)
    assert [n.op for n in g.nodes] == ["relu"]


def test_truncated_caffemodel(tmp_path):
    proto = write_net(tmp_path, CONV_NET)
    model = random_caffemodel(proto, tmp_path / "net.caffemodel")
    model.write_bytes(model.read_bytes()[:-7])
    with pytest.raises(LpdcParseError, match=r"net\.caffemodel: truncated or corrupt caffemodel"):
        load_caffe(proto, weights=model)


def test_weights_for_layers_the_prototxt_lacks_are_warned(tmp_path):
    proto = write_net(tmp_path, CONV_NET)
    model = random_caffemodel(proto, tmp_path / "net.caffemodel")
    small = write_net(tmp_path, input_layer({"data": [1, 2, 5, 5]}) + CONV_NET.split("\n", 1)[1].rsplit("layer", 1)[0],
                      "small.prototxt")
    with pytest.warns(UserWarning, match=r"net\.caffemodel: weights for 1 layer\(s\) that .*small\.prototxt does not "
                                         r"have were ignored: 'fc'"):
        load_caffe(small, weights=model)


def test_missing_weights_are_an_error_unless_random(tmp_path):
    proto = write_net(tmp_path, CONV_NET)
    with pytest.raises(LpdcParseError, match=r"layer 'conv1' \(Convolution\).*no weights were given"):
        load_caffe(proto)
    partial = tmp_path / "partial.caffemodel"
    from lpdc.frontends.caffe.reader import read_prototxt
    from lpdc.frontends.caffe.upgrade import upgrade_net
    from lpdc.tools.caffe_weights import write_caffemodel
    net = upgrade_net(read_prototxt(proto), str(proto))
    write_caffemodel(net, {"conv1": [np.zeros((3, 2, 3, 3)), np.zeros(3)]}, partial)
    with pytest.raises(LpdcParseError, match=r"layer 'fc' \(InnerProduct\): .*partial\.caffemodel has no weights"):
        load_caffe(proto, weights=partial)
    with pytest.warns(UserWarning, match=r"1 layer\(s\) have no weights there and got random values: fc"):
        g = load_caffe(proto, weights=partial, random_weights=True)
    assert not g.const_data(next(n for n in g.nodes if n.op == "conv").inputs[1]).any()


def test_blob_size_mismatch_names_layer_and_both_sizes(tmp_path):
    text = CONV_NET
    with pytest.raises(LpdcTypeError, match=r"net\.caffemodel: layer 'conv1' \(Convolution\).*blob 0 \(weight\) has "
                                           r"shape \[3, 2, 5, 5\] \(150 values\).*needs \[3, 2, 3, 3\] \(54 values\)"):
        load_text(tmp_path, text, {"conv1": [np.zeros((3, 2, 5, 5)), np.zeros(3)], "fc": [np.zeros((4, 75)),
                                                                                      np.zeros(4)]})
    with pytest.raises(LpdcTypeError, match=r"layer 'conv1'.*1 blobs for this layer, the prototxt needs 2"):
        load_text(tmp_path, text, {"conv1": [np.zeros((3, 2, 3, 3))], "fc": [np.zeros((4, 75)), np.zeros(4)]})


@pytest.mark.parametrize(("text", "cls", "pattern"), [
    ('input: "x" input_dim: 1 input_dim: 2 input_dim: 3 layer { name: "r" type: "ReLU" bottom: "x" top: "y" }',
     LpdcParseError, r"`input_dim` needs 4 values per `input`"),
    ('layer { name: "r" type: "ReLU" bottom: "x" top: "y" } layers { name: "s" type: RELU bottom: "y" top: "z" }',
     LpdcParseError, r"mixes `layer`"),
    (input_layer({"x": [1, 2, 3, 3]}) + 'layer { name: "p" type: "Pooling" bottom: "x" top: "y" '
     'pooling_param { pool: STOCHASTIC kernel_size: 2 } }', LpdcUnsupportedError, r"layer 'p'.*STOCHASTIC.*`pool`"),
    (input_layer({"x": [1, 2, 3, 3]}) + 'layer { name: "e" type: "Eltwise" bottom: "x" bottom: "x" top: "y" '
     'eltwise_param { operation: MAX coeff: 1 coeff: 2 } }', LpdcTypeError, r"layer 'e'.*`coeff` applies only to"),
    (input_layer({"x": [1, 2, 3, 3]}) + 'layer { name: "c" type: "Convolution" bottom: "x" top: "y" '
     'convolution_param { num_output: 3 kernel_size: 1 group: 2 } }', LpdcTypeError, r"layer 'c'.*divisible by group"),
])
def test_bad_nets(tmp_path, text, cls, pattern):
    with pytest.raises(cls, match=pattern):
        load_text(tmp_path, text, random_weights=True)


def test_shapes_for_unknown_inputs(tmp_path):
    with pytest.raises(LpdcParseError, match=r"shapes= names \['dta'\].*inputs: \['data'\]"):
        load_text(tmp_path, CONV_NET, random_weights=True, shapes={"dta": [1, 2, 5, 5]})


def test_no_warnings_on_a_clean_net(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_text(tmp_path, CONV_NET, random_weights=True)
