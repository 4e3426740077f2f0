"""Where measured costs come from: the `CostSource` interface and its JSON-file cache.

A cost source answers `lookup(signature, choice) -> seconds | None` for one device. Signatures
name a layer by everything that decides its run time (op, logical shapes, dtypes, attributes,
weight density), so the ResNet blocks that repeat one shape share their measurements; `choice` is
a choice label such as "winograd_4x4@NCHW" (or "NCHW->NHWC" for a layout conversion). The
autotuner's database will implement the same one-method interface.

`CostCache` keeps measurements in a JSON file (default ~/.cache/lpdc/costs.json, or
$LPDC_COST_CACHE), keyed "device|signature|choice". Saving re-reads the file and merges before an
atomic replace, so concurrent compilers lose nothing but a racing duplicate measurement.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Protocol

from ...errors import LpdcError
from ...ir import Graph, Node, TensorType
from ...ir.ops.quant import layout_shape

log = logging.getLogger(__name__)
_SKIP_ATTRS = ("primitive", "device", "split")


class CostSource(Protocol):
    """Measured costs of one device, in seconds; None when the pair was never measured."""

    def lookup(self, signature: str, choice: str) -> float | None: ...


def default_cache_path() -> Path:
    """$LPDC_COST_CACHE, else $XDG_CACHE_HOME/lpdc/costs.json, else ~/.cache/lpdc/costs.json."""
    env = os.environ.get("LPDC_COST_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lpdc" / "costs.json"


class CostCache:
    """A JSON file of measured costs for one device (a CostSource that can also store)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, device: str = "numpy") -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self.device = device
        self._entries: dict[str, float] = self._read()
        self._new: dict[str, float] = {}

    def _key(self, signature: str, choice: str) -> str:
        return f"{self.device}|{signature}|{choice}"

    def lookup(self, signature: str, choice: str) -> float | None:
        return self._entries.get(self._key(signature, choice))

    def store(self, signature: str, choice: str, seconds: float) -> None:
        key = self._key(signature, choice)
        self._entries[key] = self._new[key] = float(seconds)

    def __len__(self) -> int:
        return sum(k.startswith(self.device + "|") for k in self._entries)

    def save(self) -> None:
        """Merge new entries into the file (atomically); a cache that cannot be written only logs."""
        if not self._new:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            merged = {**self._read(), **self._new}
            fd, tmp = tempfile.mkstemp(prefix=".costs-", dir=self.path.parent)
            with os.fdopen(fd, "w") as f:
                json.dump({"version": 1, "entries": merged}, f, indent=0, sort_keys=True)
            os.replace(tmp, self.path)
            self._entries.update(merged)
            self._new.clear()
        except OSError as e:
            log.warning("cannot write the cost cache %s: %s", self.path, e)

    def _read(self) -> dict[str, float]:
        try:
            with open(self.path) as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            log.warning("ignoring unreadable cost cache %s: %s", self.path, e)
            return {}
        entries = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            log.warning("ignoring cost cache %s: no 'entries' table", self.path)
            return {}
        return {k: float(v) for k, v in entries.items() if isinstance(v, int | float) and math.isfinite(v)}


def _logical(t: TensorType) -> str:
    shape = t.shape
    if t.rank in (4, 5) and t.layout not in (None, "NCHW"):
        try:
            shape = layout_shape(t.shape, t.layout, "NCHW")
        except (LpdcError, ValueError):
            pass
    return f"{t.dtype}{list(shape)}".replace(" ", "")


def layer_signature(node: Node, graph: Graph) -> str:
    """Everything that decides a layer's run time, as one string (layout-independent)."""
    parts = [node.op]
    for v in node.inputs:
        if v is None:
            parts.append("_")
            continue
        data = graph.const_data(v)
        parts.append(("c" if data is not None else "a") + _logical(v.type))
    attrs = {k: a for k, a in sorted(node.attrs.items()) if k not in _SKIP_ATTRS}
    parts.append(json.dumps(attrs, separators=(",", ":"), default=str))
    if node.op in ("conv", "fully_connected") and len(node.inputs) > 1:
        w = graph.const_data(node.inputs[1])
        if w is not None and w.size:
            from ...backends.numpy.primitives.dispatch import weight_density

            parts.append(f"density={round(weight_density(w) * 20) / 20:g}")  # 5% buckets
    return " ".join(parts)


def convert_signature(t: TensorType) -> str:
    """The signature of a layout conversion of an activation typed `t` (default layout)."""
    return f"layout_convert {_logical(t)}"
