"""Every zoo model through ONNX: export, ONNX Runtime on the file, lpdc on the loaded file, the
original IR graph, and a second export of the loaded graph (round trip), all agreeing within
1e-4 x max|output|. One combined test per model so each big model is built and run once.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.frontends.onnx import load_onnx
from lpdc.frontends.onnx_export import export_onnx
from lpdc.tools.cli import main
from lpdc.tools.zoo import MODELS, build

TOL = 1e-4
# Models with over ~100 MB of weights keep them in an external .data file: serialising a
# 550 MB protobuf costs more than the test itself.
BIG = {"alexnet", "vgg16"}
# Published parameter counts (BatchNorm running statistics add up to 1% where BatchNorm is used).
PUBLISHED_PARAMS = {"alexnet": 61.0e6, "vgg16": 138.4e6, "googlenet": 7.0e6, "resnet18": 11.7e6,
                    "resnet50": 25.6e6, "mobilenet_v1": 4.2e6, "mobilenet_v2": 3.5e6, "squeezenet1_0": 1.25e6,
                    "squeezenet1_1": 1.24e6, "lenet": 0.431e6}
ZOO = ["lenet", "alexnet", "vgg16", "googlenet", "mobilenet_v1", "mobilenet_v2", "squeezenet1_0", "squeezenet1_1",
       "resnet18", "resnet50", "sphereface20", "ssd_mobilenet"]
WORST: dict[str, float] = {}


def _ort(path: str) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # plain kernels, fast start
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _rel_err(got: np.ndarray, ref: np.ndarray) -> float:
    assert got.shape == ref.shape and got.dtype == ref.dtype
    return float(np.abs(got.astype(np.float64) - ref).max() / max(np.abs(ref).max(), 1e-30))


@pytest.mark.parametrize("name", ZOO)
def test_zoo_model_onnx_round_trip(name, tmp_path):
    g = build(name)
    params = sum(g.params[n.attrs["param"]].size for n in g.nodes if n.op == "const")
    if name in PUBLISHED_PARAMS:
        assert params == pytest.approx(PUBLISHED_PARAMS[name], rel=0.015), f"{params / 1e6:.3f}M parameters"
    if name == "googlenet":
        assert any(n.op == "lrn" for n in g.nodes)
    assert any(n.op == "batch_norm" for n in g.nodes) == (name in ("mobilenet_v1", "mobilenet_v2", "resnet18",
                                                                   "resnet50", "ssd_mobilenet"))
    rng = np.random.default_rng(1)
    feed = {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    names = [v.name for v in g.outputs]

    first = tmp_path / f"{name}.onnx"
    export_onnx(g, first, external_data=name in BIG)
    ref = _ort(str(first)).run(names, feed)
    original = compile_numpy(g).run(feed)
    del g  # the big models: keep one copy of the weights alive at a time
    loaded = load_onnx(first)
    assert [v.name for v in loaded.outputs] == names
    from_file = compile_numpy(loaded).run(feed)

    second = tmp_path / f"{name}.rt.onnx"
    export_onnx(loaded, second, external_data=name in BIG)
    del loaded
    again = _ort(str(second)).run(names, feed)

    errs = []
    for i, out in enumerate(names):
        assert np.abs(ref[i]).max() > 0, f"{out} is all zeros: the comparison would prove nothing"
        errs += [_rel_err(original[out], ref[i]), _rel_err(from_file[out], ref[i]), _rel_err(again[i], ref[i])]
    WORST[name] = max(errs)
    assert max(errs) <= TOL, f"{name}: relative errors {errs}"


def test_zoo_lists_every_model_and_cli_exports_one(capsys, tmp_path):
    assert set(ZOO) <= set(MODELS)
    assert main(["zoo", "list"]) == 0
    listed = capsys.readouterr().out.split()
    assert set(ZOO) <= set(listed)
    out = tmp_path / "lenet.onnx"
    assert main(["zoo", "export", "lenet", "-o", str(out)]) == 0
    x = np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)
    want = compile_numpy(build("lenet")).run({"data": x})["prob"]
    got = _ort(str(out)).run(None, {"data": x})[0]
    assert _rel_err(got, want) <= TOL and abs(float(got.sum()) - 1.0) < 1e-5


def test_report_worst_zoo_error(capsys):
    """Runs last in this file: prints the worst relative error seen over the zoo (see -s or -rP)."""
    if not WORST:
        pytest.skip("no zoo model ran in this session")
    worst = max(WORST, key=WORST.get)
    with capsys.disabled():
        print(f"\nworst relative error over {len(WORST)} zoo models: {WORST[worst]:.3g} ({worst})")
    assert WORST[worst] <= TOL
