"""The model zoo: standard architectures with deterministic random weights, as IR graphs.

`lpdc.load("zoo:NAME")` builds one; `MODELS` lists them. `tiny_cnn` is the built-in default model
(conv, batch-norm, ReLU, pooling, depthwise and pointwise convs, a residual add, a classifier).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import LpdcError
from ..ir import Graph
from .builder import NetBuilder

MODELS: dict[str, Callable[..., Graph]] = {}
DEFAULT_MODEL = "tiny_cnn"


def model(name: str) -> Callable[[Callable[..., Graph]], Callable[..., Graph]]:
    def deco(fn: Callable[..., Graph]) -> Callable[..., Graph]:
        MODELS[name] = fn
        return fn
    return deco


def build(name: str, **options: Any) -> Graph:
    """Build zoo model `name` (options: seed, batch, ...)."""
    if name not in MODELS:
        raise LpdcError(f"unknown zoo model {name!r}; known: {', '.join(sorted(MODELS))}")
    return MODELS[name](**options)


@model("tiny_cnn")
def tiny_cnn(seed: int = 0, batch: int = 1) -> Graph:
    """A 32x32 CIFAR-sized classifier exercising the common CNN layer kinds."""
    b = NetBuilder("tiny_cnn", (batch, 3, 32, 32), seed)
    x = b.act(b.bn(b.conv(b.x, 16, 3, pad=1, bias=False)))
    x = b.pool(x, "max", 2, 2)
    y = b.act(b.bn(b.conv(x, 16, 3, pad=1, group=16, bias=False)))  # depthwise
    y = b.bn(b.conv(y, 16, 1, bias=False))  # pointwise
    x = b.act(b.g.op("add", x, y, name="res1"))
    x = b.act(b.bn(b.conv(x, 32, 3, stride=2, pad=1, bias=False)))
    x = b.g.op("global_avg_pool", x, name="gap")
    x = b.g.op("flatten", x, name="flatten")
    x = b.fc(x, 10)
    return b.finish(b.g.op("softmax", x, name="prob", axis=1))


# The standard architectures register themselves through @model when imported.
from . import zoo_models, zoo_ssd  # noqa: E402,F401
