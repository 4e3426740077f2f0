"""Where each layer's learned blobs come from: a caffemodel, or deterministic random values.

Converters ask for blobs in Caffe's own layout (`BlobSpec`: shape and role), so blobs read from a
file and random ones go through the same conversion code. Random blobs are seeded by the layer
name and blob index (or the shared ParamSpec name, so shared weights stay shared) and scaled by
role: He-uniform weights, small biases, positive BatchNorm variances.
"""

from __future__ import annotations

import math
import warnings
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...errors import LpdcParseError, LpdcTypeError
from ...ir import limits
from ..finite import count_nonfinite, warn_nonfinite
from .reader import CaffeLayerBlobs

# Random BatchNorm blobs store statistics times this factor, as Caffe's moving averages do, so
# the 1/factor rescaling is exercised by every generated model.
RANDOM_BN_FACTOR = 2.0


@dataclass(frozen=True)
class BlobSpec:
    """One blob a layer needs: Caffe shape, role (for random values) and fan-in (for weights)."""

    shape: tuple[int, ...]
    role: str
    fan_in: int = 1


@dataclass
class WeightSource:
    """Serves blobs by layer; with `record`, keeps every blob it hands out in `issued` (for writing
    caffemodels; off by default since converted weights may be copies and memory would double)."""

    caffemodel: dict[str, CaffeLayerBlobs] | None
    random: bool
    seed: int = 0
    weights_name: str = "<weights>"
    record: bool = False
    issued: dict[str, list[np.ndarray]] = field(default_factory=dict)
    randomised: list[str] = field(default_factory=list)
    nonfinite: list[tuple[str, int]] = field(default_factory=list)
    total_bytes: int = 0

    def blobs(self, layer: Any, specs: list[BlobSpec], where: str) -> list[np.ndarray]:
        """The blobs of `layer` in Caffe layout, checked against `specs`."""
        if not specs:
            return []
        self._check_sizes(specs, where)
        stored = self.caffemodel.get(layer.name) if self.caffemodel is not None else None
        if stored is not None and stored.blobs:
            arrays = self._checked(layer, stored.blobs, specs)
        elif self.random:
            if self.caffemodel is not None:
                self.randomised.append(layer.name)
            arrays = [self._random(layer, i, s) for i, s in enumerate(specs)]
        elif self.caffemodel is None:
            raise LpdcParseError("the layer has learned parameters but no weights were given: pass "
                                 "weights='net.caffemodel', or random_weights=True", where=where)
        else:
            raise LpdcParseError(f"{self.weights_name} has no weights for this layer; pass random_weights=True to "
                                 "fill missing layers with random values", where=where)
        if self.record:
            self.issued[layer.name] = arrays
        return arrays

    def _check_sizes(self, specs: list[BlobSpec], where: str) -> None:
        """Element and total weight-byte limits on the blobs the prototxt asks for, before any is
        generated (a hostile prototxt can declare a petabyte InnerProduct)."""
        for s in specs:
            if any(d < 0 for d in s.shape):
                raise LpdcParseError(f"{s.role} blob would have a negative dimension {list(s.shape)}", where=where)
            limits.check_elements(math.prod(s.shape), f"{s.role} blob {list(s.shape)}", where=where)
            self.total_bytes += 4 * math.prod(s.shape)
        limits.check_weight_bytes(self.total_bytes, where=where)

    def _checked(self, layer: Any, blobs: list[np.ndarray], specs: list[BlobSpec]) -> list[np.ndarray]:
        where = f"{self.weights_name}: layer '{layer.name}' ({layer.type})"
        if len(blobs) != len(specs):
            roles = ", ".join(f"{s.role} {list(s.shape)}" for s in specs)
            raise LpdcTypeError(f"the caffemodel has {len(blobs)} blobs for this layer, the prototxt needs "
                                f"{len(specs)} ({roles})", where=where)
        out = []
        for i, (b, s) in enumerate(zip(blobs, specs, strict=True)):
            if _strip(b.shape) != _strip(s.shape):
                raise LpdcTypeError(f"blob {i} ({s.role}) has shape {list(b.shape)} ({b.size} values) in the "
                                    f"caffemodel, the prototxt needs {list(s.shape)} ({int(np.prod(s.shape))} values)",
                                    where=where)
            out.append(np.ascontiguousarray(b.reshape(s.shape), np.float32))
            if count_nonfinite(out[-1]):
                self.nonfinite.append((f"{layer.name}/{i}", count_nonfinite(out[-1])))
        return out

    def _random(self, layer: Any, index: int, spec: BlobSpec) -> np.ndarray:
        shared = layer.param[index].name if index < len(layer.param) else ""
        key = shared or f"{layer.name}/{index}"
        rng = np.random.default_rng([self.seed, zlib.crc32(key.encode("utf-8"))])
        return np.asarray(random_blob(rng, spec), np.float32)

    def report(self) -> None:
        """Warn once about layers that got random values although a caffemodel was given, and once
        about NaN/inf blobs (accepted: see frontends/finite.py)."""
        warn_nonfinite(self.nonfinite, self.weights_name, stacklevel=4)
        if self.randomised:
            names = ", ".join(self.randomised[:5]) + (" ..." if len(self.randomised) > 5 else "")
            warnings.warn(f"{self.weights_name}: {len(self.randomised)} layer(s) have no weights there and got "
                          f"random values: {names}", stacklevel=3)


def _strip(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop leading 1s: legacy 4-D blob shapes are right-aligned (a bias [N] is stored 1x1x1xN)."""
    s = list(shape)
    while s and s[0] == 1:
        s.pop(0)
    return tuple(s)


def random_blob(rng: np.random.Generator, spec: BlobSpec) -> np.ndarray:
    """float32 values for one blob by role; statistics blobs are scaled by RANDOM_BN_FACTOR like Caffe's."""
    shape, role = spec.shape, spec.role
    if role == "weight":  # He-uniform: U(-a, a) with variance 2/fan_in; uniform is ~5x faster than normal
        w = rng.random(shape, dtype=np.float32)
        w -= np.float32(0.5)
        w *= np.float32(2 * np.sqrt(6.0 / max(spec.fan_in, 1)))
        return w
    normal = rng.standard_normal(shape, dtype=np.float32)
    if role in ("bias", "beta"):
        return normal * np.float32(0.05)
    if role == "mean":
        return normal * np.float32(0.1 * RANDOM_BN_FACTOR)
    if role == "var":
        return (1 + rng.random(shape, dtype=np.float32)) * np.float32(RANDOM_BN_FACTOR)
    if role == "bn_factor":
        return np.full(shape, RANDOM_BN_FACTOR, np.float32)
    if role in ("gamma", "norm_scale"):
        return 1 + normal * np.float32(0.1)
    if role == "slope":
        return np.float32(0.25) + normal * np.float32(0.05)
    raise AssertionError(f"unknown blob role {role}")
