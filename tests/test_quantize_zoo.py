"""int8 (per-channel weights, per-tensor activations, integer kernels) on zoo models with random
weights and random inputs: output SQNR against float and top-1 agreement.

The SQNR is taken on the logits (the softmax input): a random network's softmax is nearly one-hot,
so its SQNR says more about the softmax than about quantization. Four calibration inputs, three
evaluation inputs, models that run in seconds on the NumPy reference backend.
"""

from __future__ import annotations

import numpy as np
import pytest
from lpdc.backends.numpy import compile_numpy
from lpdc.passes.quantize import quantizable_layers, quantize
from lpdc.passes.quantize.metrics import sqnr_db
from lpdc.tools import zoo

CANDIDATES = ("tiny_cnn", "lenet", "squeezenet1_1", "mobilenet_v1")
MODELS = [m for m in CANDIDATES if m in zoo.MODELS]


def _inputs(graph, seeds: range) -> list[dict[str, np.ndarray]]:
    x = graph.inputs[0]
    return [{x.name: np.random.default_rng(s).standard_normal(x.type.shape).astype(np.float32)} for s in seeds]


def _logits_and_output(graph, feed) -> tuple[np.ndarray, np.ndarray]:
    out = graph.outputs[0]
    name = out.producer.inputs[0].name if out.producer.op == "softmax" else out.name
    seen = {}
    result = compile_numpy(graph).run(feed, observer=lambda n, o: seen.update({n.output.name: o[0]})
                                      if n.output.name == name else None)
    return seen[name].astype(np.float64), result[out.name]


def test_enough_zoo_models_to_judge():
    assert "tiny_cnn" in MODELS and len(MODELS) >= 3, MODELS


@pytest.mark.parametrize("name", MODELS)
def test_int8_per_channel_keeps_zoo_outputs(name):
    graph = zoo.build(name)
    q = quantize(graph, _inputs(graph, range(4)), "int8")
    layers = quantizable_layers(graph)
    integer = [n for n in q.nodes if n.op in ("conv", "fully_connected") and n.output.type.dtype == "i32"]
    assert len(integer) == len(layers)  # every conv / fc runs on integer kernels
    assert all(n.inputs[1].type.quant.axis == 0 for n in integer)  # per-channel weights
    ref, got = zip(*[(_logits_and_output(graph, f), _logits_and_output(q, f)) for f in _inputs(graph, range(100, 103))],
                   strict=True)
    sqnr = sqnr_db(np.concatenate([r[0] for r in ref]), np.concatenate([g[0] for g in got]))
    agree = np.mean([r[1].argmax() == g[1].argmax() for r, g in zip(ref, got, strict=True)])
    assert sqnr > 20.0, (name, sqnr, agree)
    assert agree >= 2 / 3, (name, sqnr, agree)
