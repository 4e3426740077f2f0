"""A small, real, labelled task: a CNN trained in NumPy on scikit-learn's bundled digits (8x8 images).

    graph, (x_test, y_test) = train_digits_cnn(seed=0)
    accuracy(graph, x_test, y_test)          # fraction of the held-out split classified right

The network is conv 8 3x3 (relu) -> maxpool 2 -> conv 16 3x3 (relu) -> maxpool 2 -> fc 10, trained
with hand-written backprop and Adam, seeded, in a couple of seconds on one core; `digits_graph`
builds its IR graph from the weights at any batch size (`weights_of` gets them back from a graph).
`digits_split` gives three disjoint parts: train (fit, calibrate), validation (tune, e.g. the
quantization pipeline's budget) and test (report). The data ships with scikit-learn (no download).
The weights trained with seed 0 are cached in tests/fixtures/digits_cnn_seed0.npz when that file is
present, so tests and experiments see the very same model on every machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..errors import LpdcError
from ..ir import Graph, TensorType

TEST_SIZE = 450  # held-out images (a quarter of the 1,797)
VAL_SIZE = 300
EPOCHS = 30
LAYERS = ("conv1", "conv2", "fc")
_FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "digits_cnn_seed{seed}.npz"


class DigitsSplit(NamedTuple):
    """Images f32 [N,1,8,8] in [0, 1] and int64 labels; the three parts are disjoint and stratified."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def digits_split(seed: int = 0) -> DigitsSplit:
    """Train (1,047 images: fit and calibrate), validation (300: tune, e.g. explore quantization
    budgets) and held-out test (450: report)."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[:, None]
    y = data.target.astype(np.int64)
    x_rest, x_te, y_rest, y_te = train_test_split(x, y, test_size=TEST_SIZE, random_state=seed, stratify=y)
    x_tr, x_va, y_tr, y_va = train_test_split(x_rest, y_rest, test_size=VAL_SIZE, random_state=seed, stratify=y_rest)
    return DigitsSplit(x_tr, y_tr, x_va, y_va, x_te, y_te)


def digits_graph(weights: dict[str, np.ndarray], batch: int = 150) -> Graph:
    """The IR graph of the digits CNN (input %x f32[batch,1,8,8], output %logits f32[batch,10])."""
    g = Graph("digits_cnn")
    x = g.add_input("x", TensorType((batch, 1, 8, 8)))
    for i, name in enumerate(("conv1", "conv2")):
        w = g.add_const(weights[f"{name}.w"], f"{name}.w")
        b = g.add_const(weights[f"{name}.b"], f"{name}.b")
        x = g.op("conv", x, w, b, name=name, pad=[1, 1, 1, 1], activation="relu")
        x = g.op("max_pool", x, name=f"pool{i + 1}", kernel=[2, 2], stride=[2, 2])
    w, b = g.add_const(weights["fc.w"], "fc.w"), g.add_const(weights["fc.b"], "fc.b")
    g.set_outputs(g.add_node("fully_connected", [x, w, b], name="fc", outputs=["logits"]).outputs)
    g.verify()
    return g


def weights_of(graph: Graph) -> dict[str, np.ndarray]:
    """The float weights of a digits CNN graph, by parameter name (e.g. to rebuild at another batch)."""
    return {k: np.asarray(v, np.float32) for k, v in graph.params.items() if k.split(".")[0] in LAYERS}


def train_digits_cnn(seed: int = 0, *, batch: int = 150, epochs: int = EPOCHS,
                     cache: bool = True) -> tuple[Graph, tuple[np.ndarray, np.ndarray]]:
    """Train (or load the cached seed-0 weights of) the digits CNN; returns (graph, (x_test, y_test))."""
    x_tr, y_tr, _, _, x_te, y_te = digits_split(seed)
    fixture = Path(str(_FIXTURE).format(seed=seed))
    if cache and fixture.exists() and epochs == EPOCHS:  # the fixture holds the default training
        with np.load(fixture, allow_pickle=False) as f:
            weights = {k: f[k] for k in f.files}
    else:
        from ._digits_train import train

        weights = train(x_tr, y_tr, seed=seed, epochs=epochs)
    return digits_graph(weights, batch), (x_te, y_te)


def predict(model, x: np.ndarray) -> np.ndarray:
    """Class scores of `x` from a Graph or an Executable, run in chunks of the graph's batch size."""
    exe = _executable(model)
    name = exe.graph.inputs[0].name
    batch = exe.graph.inputs[0].type.shape[0]
    if x.ndim != 4 or tuple(x.shape[1:]) != tuple(exe.graph.inputs[0].type.shape[1:]):
        raise LpdcError(f"images of shape {list(x.shape)} do not fit input %{name} "
                        f"{list(exe.graph.inputs[0].type.shape)}", where="digits_cnn.predict")
    outs = []
    for start in range(0, len(x), batch):
        chunk = x[start:start + batch]
        pad = batch - len(chunk)  # the last chunk is padded with copies of its last image
        feed = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)]) if pad else chunk
        y = next(iter(exe.run({name: feed}).values()))
        outs.append(np.asarray(y, np.float64)[:len(chunk)])
    return np.concatenate(outs)


def accuracy(model, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy (a fraction in [0, 1]) of a Graph or Executable on images `x` with labels `y`."""
    if len(x) != len(y) or len(x) == 0:
        raise LpdcError(f"{len(x)} images but {len(y)} labels", where="digits_cnn.accuracy")
    return float(np.mean(predict(model, x).argmax(axis=-1) == np.asarray(y)))


def _executable(model):
    if isinstance(model, Graph):
        from ..backends.numpy import compile_numpy

        return compile_numpy(model)
    if hasattr(model, "run") and hasattr(model, "graph"):
        return model
    raise LpdcError(f"expected an lpdc Graph or Executable, got {type(model).__name__}")
