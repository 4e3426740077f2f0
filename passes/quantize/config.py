"""Quantization configurations: per layer and per variable (weights, activations, bias) specs, as JSON.

    {"format": "lpdc-quant-config-1", "lowering": "auto", "calibration": {"method": "minmax"},
     "default": {"weights": {"kind": "fixed", "bits": 8}, "activations": {...}, "bias": {...}},
     "layers": {"conv1": {"weights": {"kind": "kmeans", "bits": 4, "centroid_bits": 8}}}}

Kinds: float (left alone), fixed (dynamic fixed point; `frac` = FL, searched when absent), affine
(int scale + zero point; weights symmetric per channel unless per_channel is false, activations
asymmetric per tensor from a calibrated or given `range`; an affine bias is stored in int32 at the
accumulator's scale), kmeans (weights only: 2**bits fixed-point centroids of `centroid_bits`).
"activations" means a layer's *input* feature map: what its arithmetic multiplies by the weights.
Lowering: qdq (integer storage, float arithmetic), integer (integer kernels; every layer must be
eligible), auto (integer where eligible, qdq elsewhere).
Presets: float, int8 / intN, fixedN, kmeansN (N = bits).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from ...errors import LpdcError
from ...ir import Graph, dtypes
from .calibrate import METHODS
from .kmeans import KMEANS_MAX_BITS
from .schemes import check_bits

FORMAT = "lpdc-quant-config-1"
VARIABLES = ("weights", "activations", "bias")
KINDS = ("float", "fixed", "affine", "kmeans")
LOWERINGS = ("auto", "qdq", "integer")
QUANTIZABLE_OPS = ("conv", "fully_connected")


@dataclass(frozen=True)
class VarSpec:
    """How one variable of one layer is quantized."""

    kind: str = "float"
    bits: int = 8
    frac: int | None = None
    centroid_bits: int = 8
    per_channel: bool = True
    range: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise LpdcError(f"unknown quantization kind {self.kind!r}; known: {', '.join(KINDS)}", where="quant config")
        if self.kind == "kmeans":
            check_bits(self.bits, "quant config: kmeans index bits", 2, KMEANS_MAX_BITS)
            check_bits(self.centroid_bits, "quant config: kmeans centroid bits")
        elif self.kind != "float" and self.bits != 32:  # 32: an int32 bias at the accumulator's scale
            check_bits(self.bits, f"quant config: {self.kind} bits")
        if self.frac is not None and (not isinstance(self.frac, int) or not 0 <= self.frac <= 32):
            raise LpdcError(f"fractional length {self.frac!r} is outside 0-32", where="quant config")
        if self.range is not None:
            lo, hi = (float(r) for r in self.range)
            if not lo <= hi:
                raise LpdcError(f"activation range {self.range} is empty", where="quant config")
            object.__setattr__(self, "range", (lo, hi))

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if v != getattr(VarSpec, k, None) or k in ("kind", "bits")}
        if self.range is not None:
            d["range"] = list(self.range)
        return d

    @staticmethod
    def from_dict(d: Any, where: str) -> VarSpec | None:
        if d is None:
            return None
        if not isinstance(d, dict):
            raise LpdcError(f"expected an object, got {type(d).__name__}", where=where)
        unknown = sorted(set(d) - set(VarSpec.__dataclass_fields__))
        if unknown:
            raise LpdcError(f"unknown key {unknown[0]!r} (known: {', '.join(VarSpec.__dataclass_fields__)})",
                            where=where)
        kw = dict(d)
        if kw.get("range") is not None:
            kw["range"] = tuple(kw["range"])
        try:
            return VarSpec(**kw)
        except LpdcError as e:
            raise LpdcError(e.message, where=where) from None
        except (TypeError, ValueError) as e:
            raise LpdcError(f"bad variable spec: {e}", where=where) from None


FLOAT = VarSpec()


@dataclass(frozen=True)
class QuantConfig:
    """Specs for every quantizable layer: `layers` overrides `default` per layer and variable."""

    default: dict[str, VarSpec] = field(default_factory=lambda: dict.fromkeys(VARIABLES, FLOAT))
    layers: dict[str, dict[str, VarSpec]] = field(default_factory=dict)
    calibration: str = "minmax"
    percentile: float = 99.99
    lowering: str = "auto"

    def __post_init__(self) -> None:
        if self.calibration not in METHODS:
            raise LpdcError(f"unknown calibration method {self.calibration!r}; known: {', '.join(METHODS)}",
                            where="quant config")
        if self.lowering not in LOWERINGS:
            raise LpdcError(f"unknown lowering {self.lowering!r}; known: {', '.join(LOWERINGS)}", where="quant config")
        for layer, specs in [("default", self.default), *self.layers.items()]:
            bad = sorted(set(specs) - set(VARIABLES))
            if bad:
                raise LpdcError(f"unknown variable {bad[0]!r} (known: {', '.join(VARIABLES)})",
                                where=f"quant config layer {layer!r}")
            if specs.get("activations", FLOAT).kind == "kmeans" or specs.get("bias", FLOAT).kind == "kmeans":
                raise LpdcError("k-means codebooks are for weights only", where=f"quant config layer {layer!r}")

    def spec(self, layer: str, var: str) -> VarSpec:
        return self.layers.get(layer, {}).get(var, self.default.get(var, FLOAT))

    def with_spec(self, layer: str, var: str, spec: VarSpec) -> QuantConfig:
        layers = {k: dict(v) for k, v in self.layers.items()}
        layers.setdefault(layer, {})[var] = spec
        return replace(self, layers=layers)

    def validate(self, graph: Graph) -> list[str]:
        """The quantizable layer names of `graph`; an LpdcError if the config names any other layer."""
        names = quantizable_layers(graph)
        for layer in self.layers:
            if layer not in names:
                raise LpdcError(f"the configuration names layer {layer!r}, which is not a quantizable layer "
                                f"of graph @{graph.name} (those are: {', '.join(names) or 'none'})",
                                where="quant config")
        return names

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "lowering": self.lowering,
                "calibration": {"method": self.calibration, "percentile": self.percentile},
                "default": {k: v.to_dict() for k, v in self.default.items()},
                "layers": {n: {k: v.to_dict() for k, v in s.items()} for n, s in self.layers.items()}}

    @staticmethod
    def from_dict(d: Any, where: str = "quant config") -> QuantConfig:
        if not isinstance(d, dict) or d.get("format", FORMAT) != FORMAT:
            raise LpdcError(f"not an {FORMAT} configuration", where=where)
        unknown = sorted(set(d) - {"format", "lowering", "calibration", "default", "layers"})
        if unknown:
            raise LpdcError(f"unknown key {unknown[0]!r}", where=where)
        cal = d.get("calibration", {}) or {}
        layers = d.get("layers", {}) or {}
        if not isinstance(layers, dict) or not isinstance(cal, dict):
            raise LpdcError("'layers' and 'calibration' must be objects", where=where)
        return QuantConfig(default=_specs(d.get("default", {}), f"{where}: default"),
                           layers={n: _specs(s, f"{where}: layer {n!r}") for n, s in layers.items()},
                           calibration=cal.get("method", "minmax"), percentile=float(cal.get("percentile", 99.99)),
                           lowering=d.get("lowering", "auto"))

    def save(self, path: str | Path) -> Path:
        p = Path(path)
        p.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return p

    @staticmethod
    def load(path: str | Path) -> QuantConfig:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise LpdcError(f"cannot read quantization configuration: {e}", where=str(path)) from None
        return QuantConfig.from_dict(data, where=str(path))


def _specs(d: Any, where: str) -> dict[str, VarSpec]:
    if not isinstance(d, dict):
        raise LpdcError("expected an object of variable specs", where=where)
    out = {}
    for var, spec in d.items():
        if var not in VARIABLES:
            raise LpdcError(f"unknown variable {var!r} (known: {', '.join(VARIABLES)})", where=where)
        out[var] = VarSpec.from_dict(spec, f"{where}.{var}") or FLOAT
    return out


def quantizable_layers(graph: Graph) -> list[str]:
    """Names of the conv / fully_connected nodes with a float input and constant float weights."""
    return [n.name for n in graph.nodes
            if n.op in QUANTIZABLE_OPS and graph.const_data(n.inputs[1]) is not None
            and dtypes.is_float(n.inputs[0].type.dtype) and dtypes.is_float(n.inputs[1].type.dtype)]


def preset(name: str) -> QuantConfig:
    """The configuration a scheme name stands for (see the module docstring)."""
    m = re.fullmatch(r"(float|int|fixed|kmeans)(\d+)?", name.strip().lower())
    if m is None or (m.group(1) != "float") != (m.group(2) is not None):
        raise LpdcError(f"unknown quantization scheme {name!r} (use int8, intN, fixedN, kmeansN, float or a "
                        "configuration .json)", where="quantize")
    kind, bits = m.group(1), int(m.group(2) or 0)
    if kind == "float":
        return QuantConfig()
    check_bits(bits, f"quantization scheme {name!r}")
    if kind == "int":
        spec = VarSpec("affine", bits)
        return QuantConfig({"weights": spec, "activations": spec, "bias": VarSpec("affine", 32)})
    if kind == "fixed":
        spec = VarSpec("fixed", bits)
        return QuantConfig({"weights": spec, "activations": spec, "bias": VarSpec("fixed", max(bits, 16))})
    return QuantConfig({"weights": VarSpec("kmeans", bits), "activations": FLOAT, "bias": FLOAT}, lowering="qdq")


def resolve(scheme: str | dict | QuantConfig | Path) -> QuantConfig:
    """A QuantConfig from a preset name, a .json path, a dict, or a QuantConfig."""
    if isinstance(scheme, QuantConfig):
        return scheme
    if isinstance(scheme, dict):
        return QuantConfig.from_dict(scheme)
    if isinstance(scheme, Path) or (isinstance(scheme, str) and scheme.endswith(".json")):
        return QuantConfig.load(scheme)
    if isinstance(scheme, str):
        return preset(scheme)
    raise LpdcError(f"scheme must be a name, a .json path, a dict or a QuantConfig, not {type(scheme).__name__}",
                    where="quantize")
