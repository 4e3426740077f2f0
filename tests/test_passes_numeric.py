"""Every pass and pipeline keeps the NumPy reference outputs of every zoo model (and of Caffe nets).

Models are read from `lpdc.tools.zoo.MODELS` at collection time, so new zoo models are covered
without editing this file. Light models run every pass alone and the O1/O2 pipelines, at 64x64
where their layers allow (same graph structure, a fraction of the arithmetic); the heavy ones
only O2 (also shrunk where possible). Tolerance: max |before - after| <= 1e-4 * max |output| per output.
"""

from __future__ import annotations

import contextlib
import functools
import importlib

import numpy as np
import pytest
from lpdc.ir import random_inputs
from lpdc.passes.instruments import run_reference
from lpdc.passes.manager import PASSES, PIPELINES, pipeline
from lpdc.tools.zoo import MODELS, build
from passes_util import CAFFE_DIR, assert_same_outputs, fingerprint, op_counts, optimise, shrunk, unchanged

HEAVY = {"vgg16", "alexnet", "resnet50", "googlenet"}
OUR_PASSES = ["canonicalize", "fold-constants", "dce", "cse", "fold-bn", "fuse-activation", "fuse-residual",
              "fold-pad", "simplify-transpose-reshape"]
LIGHT = [m for m in MODELS if m not in HEAVY]
SMALL = ("tiny_cnn", "lenet")  # cheap enough for O3 (primitive selection measures layers)
CAFFE_NETS = ["resnet50", "mobilenet_v2", "googlenet", "squeezenet_v1.1"]


@functools.lru_cache(maxsize=4)
def prepared(model: str) -> tuple:
    """(graph, inputs, reference outputs, parameter checksums) of a zoo model, shrunk where possible."""
    g = shrunk(build(model))
    inputs = random_inputs(g, seed=1)
    return g, inputs, run_reference(g, inputs), fingerprint(g)


def _check(model: str, spec: str) -> None:
    g, inputs, ref, params = prepared(model)
    after = optimise(g, spec)
    if unchanged(g, after, params):  # same text and parameter data: outputs equal by construction
        return
    assert_same_outputs(g, after, inputs, ref, what=f"{model} after {spec}")


@pytest.mark.parametrize(("model", "spec"), [(m, s) for m in LIGHT for s in OUR_PASSES + ["O1", "O2"]])
def test_pass_keeps_outputs(model: str, spec: str) -> None:
    _check(model, spec)


@pytest.mark.parametrize("model", sorted(HEAVY & set(MODELS)))
def test_heavy_model_o2_keeps_outputs(model: str) -> None:
    _check(model, "O2")


@pytest.mark.parametrize("model", [m for m in SMALL if m in MODELS])
def test_o3_keeps_outputs(model: str) -> None:
    ctx = contextlib.nullcontext()
    with contextlib.suppress(ImportError, AttributeError):
        from lpdc.passes.select.select_primitives import select_config

        ctx = select_config(costs="model")  # analytical costs: no timing runs in the test suite
    with ctx:
        _check(model, "O3")


def test_pipelines_are_nested() -> None:
    assert pipeline(0) == [] and PIPELINES["O0"] == []
    o1, o2, o3 = pipeline(1), pipeline(2), pipeline(3)
    assert o2[:len(o1)] == o1 and o3[:len(o2)] == o2
    assert set(o3) - set(o2) <= {"select-primitives"}
    assert ("select-primitives" in o3) == ("select-primitives" in PASSES)
    for name in OUR_PASSES:
        assert name in o2 and name in PASSES


@pytest.mark.parametrize("model", [m for m in ("resnet50", "mobilenet_v2") if m in MODELS])
def test_o2_removes_every_batch_norm_and_scale(model: str) -> None:
    g = build(model)
    before, after = op_counts(g), op_counts(optimise(g, "O2"))
    assert before["batch_norm"] > 0
    assert after["batch_norm"] == after["scale"] == 0, after
    assert after["relu"] + after["clip"] == 0, after  # every activation fused into a conv epilogue
    assert sum(after.values()) < sum(before.values()) / 2


def _caffe(name: str):
    try:
        importlib.import_module("lpdc.frontends.caffe")
    except ImportError as e:
        pytest.skip(f"the Caffe frontend (lpdc.frontends.caffe) is not importable yet: {e}")
    path = CAFFE_DIR / f"{name}.deploy.prototxt"
    if not path.exists():
        pytest.skip(f"Caffe corpus not found at {path}")
    import lpdc

    g = lpdc.load(path, random_weights=True)
    if any(v.type.shape[0] != 1 for v in g.inputs):  # batch 1 keeps the test cheap
        g = lpdc.load(path, random_weights=True, shapes={v.name: (1,) + v.type.shape[1:] for v in g.inputs})
    return shrunk(g)


@pytest.mark.parametrize("name", CAFFE_NETS)
def test_caffe_net_o2_keeps_outputs(name: str) -> None:
    g = _caffe(name)
    after = optimise(g, "O2")
    assert_same_outputs(g, after, random_inputs(g, seed=2), what=f"caffe {name} after O2")
    counts = op_counts(after)
    if name in ("resnet50", "mobilenet_v2"):
        assert counts["batch_norm"] == counts["scale"] == 0, counts
    assert sum(counts.values()) < sum(op_counts(g).values())


def test_numbers_really_change_when_a_fold_is_wrong() -> None:
    """The comparison used above fails on a wrong fold (guards against a check that cannot fail)."""
    g, inputs, ref, _ = prepared(LIGHT[0])
    after = optimise(g, "O2")
    w = next(n for n in after.nodes if n.op == "const" and after.params[n.attrs["param"]].ndim == 4)
    after.params[w.attrs["param"]] = after.params[w.attrs["param"]] * np.float32(1.01)
    with pytest.raises(AssertionError, match="drifted"):
        assert_same_outputs(g, after, inputs, ref, what="tampered")
