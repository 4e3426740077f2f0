"""Every real network definition in shared/models/caffe loads, shape-infers and runs on NumPy, and
matches ONNX Runtime after export wherever ONNX can express the net.

Weights are generated: for the nets in WITH_CAFFEMODEL a .caffemodel is written with
tools/caffe_weights.py and loaded as a pair (and must equal random_weights=True with the same
seed); the others use random_weights=True. Inputs run at batch 1 (the files say up to 10000).
Nets whose fully connected layers hold 60-140M weights run at a smaller image (REDUCED), which
shrinks fc6 without changing the architecture. FCN-8s (a 102M-weight convolutional fc6, and
pad 100 making VGG16 run on 698x698 maps) and SSD300 (VGG16 on 300x300) run at full size but
are marked slow (CI runs them).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import lpdc
import numpy as np
import pytest
from caffe_util import CORPUS, run
from lpdc.frontends.caffe.reader import read_prototxt
from lpdc.frontends.caffe.upgrade import upgrade_net
from lpdc.ir import random_inputs
from lpdc.tools.caffe_weights import random_caffemodel

NETS = sorted(p.name[: -len(".prototxt")] for p in CORPUS.glob("*.prototxt")) if CORPUS.is_dir() else []
pytestmark = pytest.mark.skipif(not NETS, reason=f"Caffe corpus not found at {CORPUS}")

# Training nets read their input shape from a database: give it (batch 1).
DATA_SHAPES = {
    "alexnet.train_val": {"data": [1, 3, 227, 227]}, "alexnet.v1.train_val": {"data": [1, 3, 227, 227]},
    "lenet.train_test": {"data": [1, 1, 28, 28]}, "mnist_siamese.v1.train_test": {"pair_data": [1, 2, 28, 28]},
    "squeezenet_v1.0.train_val": {"data": [1, 3, 227, 227]}, "vgg16.train_val": {"data": [1, 3, 224, 224]},
    "vgg19.train_val": {"data": [1, 3, 224, 224]},
}
_SMALL_ALEXNET = {"data": [1, 3, 99, 99]}  # pool5 2x2 instead of 6x6: fc6 has 1M weights instead of 38M
_SMALL_VGG = {"data": [1, 3, 64, 64]}  # pool5 2x2 instead of 7x7
REDUCED = {
    **{n: _SMALL_ALEXNET for n in ("alexnet.deploy", "alexnet.input_shape.deploy", "alexnet.v1.deploy",
                                   "alexnet.train_val", "alexnet.v1.train_val", "alexnet_bn_cvgj.deploy",
                                   "caffenet.deploy", "caffenet.v0.deploy", "caffenet.v0_padding.deploy",
                                   "caffenet.v1.deploy", "rcnn_ilsvrc13.deploy")},
    **{n: _SMALL_VGG for n in ("vgg16.dummydata.deploy", "vgg16.train_val", "vgg19.train_val", "vgg19.v1.deploy",
                               "vgg19_bn_cvgj.deploy")},
    "caffenet_full_conv.deploy": {"data": [1, 3, 259, 259]},  # 2x2 class map instead of 8x8
}
SLOW = {"fcn8s_voc.deploy", "ssd300_vgg16.deploy"}  # ~10 s each here; MobileNet-SSD covers the SSD layers
WITH_CAFFEMODEL = {"lenet.deploy", "lenet.v0.deploy", "cifar10_quick.v1.deploy", "cifar10_full.deploy",
                   "squeezenet_v1.1.deploy", "mobilenet_v2.deploy", "mobilenet_ssd_bn.deploy", "mnist_siamese.deploy",
                   "resnet18_torchstyle.deploy", "sphereface20.deploy", "resnet10_preact_cvgj.deploy"}
# Output shapes at batch 1, from the architectures (ImageNet: 1000 classes; VOC: 21; SSD keep_top_k).
IMAGENET = [(1, 1000)]
EXPECTED: dict[str, list[tuple[int, ...]]] = {
    **{n: IMAGENET for n in ("alexnet.deploy", "alexnet.input_shape.deploy", "alexnet.v1.deploy",
                             "alexnet_bn_cvgj.deploy", "caffenet.deploy", "caffenet.v0.deploy",
                             "caffenet.v0_padding.deploy", "caffenet.v1.deploy", "googlenet.deploy",
                             "googlenet.v1.deploy", "inception_v3.dummydata.deploy", "resnet50.deploy",
                             "resnet101.deploy", "resnet152.deploy", "resnet10_preact_cvgj.deploy",
                             "resnet18_torchstyle.deploy", "resnet50_preact_cvgj.deploy", "vgg16.dummydata.deploy",
                             "vgg19.v1.deploy", "vgg19_bn_cvgj.deploy",
                             # training nets end at fc8 / ip2 once the loss is dropped
                             "alexnet.train_val", "alexnet.v1.train_val", "vgg16.train_val", "vgg19.train_val")},
    **{n: [(1, 1000, 1, 1)] for n in ("squeezenet_v1.0.deploy", "squeezenet_v1.1.deploy", "squeezenet_v1.0.train_val",
                                      "mobilenet_v1.deploy", "mobilenet_v2.deploy")},
    **{n: [(1, 10)] for n in ("lenet.deploy", "lenet.v0.deploy", "lenet.v1.deploy", "lenet.train_test",
                              "cifar10_quick.deploy", "cifar10_quick.v1.deploy", "cifar10_full.deploy")},
    "caffenet_full_conv.deploy": [(1, 1000, 2, 2)], "rcnn_ilsvrc13.deploy": [(1, 200)],
    "fcn8s_voc.deploy": [(1, 21, 500, 500)], "mnist_siamese.deploy": [(1, 2)],
    "mnist_siamese.v1.train_test": [(1, 2), (1, 2)], "sphereface20.deploy": [(1, 512)],
    "sphereface64.deploy": [(1, 512)], "ssd300_vgg16.deploy": [(1, 1, 200, 7)],
    "mobilenet_ssd.deploy": [(1, 1, 100, 7)], "mobilenet_ssd_bn.deploy": [(1, 1, 100, 7)],
}
NO_ONNX_OPS = {"prior_box", "detection_output"}  # SSD's post-processing has no ONNX operator


def input_shapes(name: str) -> dict[str, list[int]]:
    """The net's input blobs at batch 1 (declared by Input/DummyData layers or in DATA_SHAPES)."""
    if name in DATA_SHAPES or name in REDUCED:
        return {**DATA_SHAPES.get(name, {}), **REDUCED.get(name, {})}
    path = CORPUS / f"{name}.prototxt"
    net = upgrade_net(read_prototxt(path), str(path))
    shapes = {}
    for layer in net.layer:
        if layer.type == "Input":
            dims = [list(s.dim) for s in layer.input_param.shape]
        elif layer.type == "DummyData":
            dims = [list(s.dim) for s in layer.dummy_data_param.shape] or [
                [layer.dummy_data_param.num[0], layer.dummy_data_param.channels[0],
                 layer.dummy_data_param.height[0], layer.dummy_data_param.width[0]]]
        else:
            continue
        for i, top in enumerate(layer.top):
            d = dims[0] if len(dims) == 1 else dims[i]
            shapes[top] = [1] + list(d[1:])
    return {k: v for k, v in shapes.items() if k != "label"}


def load_net(name: str, tmp: Path, seed: int = 0) -> Any:
    path = CORPUS / f"{name}.prototxt"
    shapes = input_shapes(name)
    if name not in WITH_CAFFEMODEL:
        return lpdc.load(path, random_weights=True, seed=seed, shapes=shapes)
    model = random_caffemodel(path, tmp / f"{name}.caffemodel", seed=seed, shapes=shapes)
    return lpdc.load(path, weights=model, shapes=shapes)


@pytest.fixture(scope="module", params=[pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NETS])
def corpus_net(request, tmp_path_factory) -> dict[str, Any]:
    """One net loaded and run once; the tests below share it (pytest groups them by net)."""
    name = request.param
    g = load_net(name, tmp_path_factory.mktemp(name.replace(".", "_")))
    x = random_inputs(g)
    return {"name": name, "graph": g, "inputs": x, "outputs": run(g, **x)}


def test_corpus_net_loads_and_runs(corpus_net):
    name, g, outs = corpus_net["name"], corpus_net["graph"], corpus_net["outputs"]
    g.verify()
    assert [tuple(v.type.shape) for v in g.outputs] == EXPECTED[name]
    assert [o.shape for o in outs.values()] == EXPECTED[name]
    for k, o in outs.items():
        assert np.isfinite(o).all(), f"{name}: {k} has non-finite values"
        assert np.abs(o).max() > 0, f"{name}: {k} is all zeros"
    if name in WITH_CAFFEMODEL:  # the written pair decodes to exactly the generated weights
        again = lpdc.load(CORPUS / f"{name}.prototxt", random_weights=True, shapes=input_shapes(name))
        for k, o in run(again, **corpus_net["inputs"]).items():
            np.testing.assert_array_equal(o, outs[k], err_msg=f"{name}: {k}")


def test_corpus_net_matches_onnx_runtime(corpus_net):
    if importlib.util.find_spec("lpdc.frontends.onnx_export") is None:
        pytest.skip("lpdc.frontends.onnx_export (export_onnx) is not available yet")
    from lpdc.frontends.onnx_export import export_onnx

    g = corpus_net["graph"]
    missing = sorted({n.op for n in g.nodes} & NO_ONNX_OPS)
    if missing:
        pytest.skip(f"ONNX has no operator for {', '.join(missing)}")
    import onnxruntime as ort

    model = export_onnx(g, None)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, corpus_net["inputs"]), strict=True))
    for k, want in corpus_net["outputs"].items():
        tol = 1e-4 * float(np.abs(want).max()) + 1e-6
        np.testing.assert_allclose(got[k], want, rtol=0, atol=tol, err_msg=f"{corpus_net['name']}: {k}")
