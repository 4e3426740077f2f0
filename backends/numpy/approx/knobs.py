"""Effort knobs (DyVEDeep's SPET, SDSS, SFMA): per-layer settings kept in a side table, not in the IR.

    config = EffortConfig({"conv2": KnobSettings(spet_threshold=0.1, sdss_period=2, sdss_max=0.2)})
    exe = ApproxExecutable(graph, config)

Why a side table and not IR attributes: the knobs change *how* a layer is evaluated at run time,
not what the layer means, so the graph (and its printing, hashing, round trips and every other
backend) stays untouched; a config is tuned per model and per accuracy budget and lives next to
the model as JSON (`save_config` / `load_config`), the way quantization configs do.

The six hyper-parameters of the seed (Ganapathy et al. 2017), all absolute values:
  SPET (conv, fully_connected with a ReLU/ReLU6 epilogue): `spet_threshold` = the low threshold. The
    `spet_fraction` of each neuron's inputs with the largest |w| is summed first (with the bias);
    when that partial sum is < spet_threshold the neuron is predicted saturated (output 0) and the
    rest is skipped. None = off.
  SDSS (conv): every `sdss_period`-th output in each spatial dimension is computed; every other
    output is the mean of its computed neighbours when their max <= `sdss_max` and their range
    (max - min) <= `sdss_delta`, and is computed otherwise. Period 1 = off.
  SFMA (conv): the contribution of input feature map c to output channel o is approximated by
    mean(x_c) * sum(w_oc) when var(x_c) <= `sfma_variance` and sum|w_oc| <= `sfma_significance`.
    sfma_variance None = off.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from ....errors import LpdcError

FORMAT = "lpdc-effort-config-1"


@dataclass(frozen=True)
class KnobSettings:
    """One layer's knobs; the defaults are all off."""

    spet_threshold: float | None = None
    spet_fraction: float = 0.5
    sdss_period: int = 1
    sdss_max: float = 0.0
    sdss_delta: float = 0.0
    sfma_variance: float | None = None
    sfma_significance: float = math.inf

    def __post_init__(self) -> None:
        if not 0.0 < self.spet_fraction <= 1.0:
            raise LpdcError(f"spet_fraction must be in (0, 1], got {self.spet_fraction}", where="effort knobs")
        if not isinstance(self.sdss_period, int) or self.sdss_period < 1:
            raise LpdcError(f"sdss_period must be an integer >= 1, got {self.sdss_period!r}", where="effort knobs")
        for name in ("spet_threshold", "sdss_max", "sdss_delta", "sfma_variance", "sfma_significance"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int | float) or math.isnan(v)):
                raise LpdcError(f"{name} must be a number, got {v!r}", where="effort knobs")

    @property
    def spet(self) -> bool:
        return self.spet_threshold is not None

    @property
    def sdss(self) -> bool:
        return self.sdss_period > 1

    @property
    def sfma(self) -> bool:
        return self.sfma_variance is not None

    @property
    def active(self) -> bool:
        return self.spet or self.sdss or self.sfma

    def describe(self) -> str:
        """'spet<0.12 sdss/2(max 0.3, delta 0.1) sfma(var<=0.01, sig<=inf)' or 'off'."""
        parts = []
        if self.spet:
            parts.append(f"spet<{self.spet_threshold:.4g}@{self.spet_fraction:g}")
        if self.sdss:
            parts.append(f"sdss/{self.sdss_period}(max {self.sdss_max:.4g}, delta {self.sdss_delta:.4g})")
        if self.sfma:
            parts.append(f"sfma(var<={self.sfma_variance:.4g}, sig<={self.sfma_significance:.4g})")
        return " ".join(parts) or "off"


class EffortConfig(dict[str, KnobSettings]):
    """Layer name -> KnobSettings. Layers not listed run exactly (the reference kernel)."""

    def active_layers(self) -> list[str]:
        return [name for name, k in self.items() if k.active]


def to_json(config: EffortConfig) -> dict[str, Any]:
    """A JSON-ready dict; infinities become the strings "inf"/"-inf" (JSON has none)."""
    def enc(v: Any) -> Any:
        return ("inf" if v > 0 else "-inf") if isinstance(v, float) and math.isinf(v) else v
    return {"format": FORMAT,
            "layers": {name: {k: enc(v) for k, v in asdict(s).items()} for name, s in config.items()}}


def from_json(data: Any, where: str = "effort config") -> EffortConfig:
    """Parse `to_json`'s output; unknown keys and bad values are LpdcErrors naming the layer."""
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("layers"), dict):
        raise LpdcError(f"not an effort config (expected {{'format': {FORMAT!r}, 'layers': {{...}}}})", where=where)
    known = {f.name for f in fields(KnobSettings)}
    config = EffortConfig()
    for name, spec in data["layers"].items():
        if not isinstance(spec, dict) or set(spec) - known:
            bad = sorted(set(spec) - known) if isinstance(spec, dict) else spec
            raise LpdcError(f"layer {name!r}: unknown knob(s) {bad}; known: {', '.join(sorted(known))}", where=where)
        values = {k: float(v) if v in ("inf", "-inf") else v for k, v in spec.items()}
        try:
            config[name] = KnobSettings(**values)
        except LpdcError as e:
            raise LpdcError(f"layer {name!r}: {e.message}", where=where) from None
    return config


def save_config(config: EffortConfig, path: str | Path) -> Path:
    out = Path(path)
    try:
        out.write_text(json.dumps(to_json(config), indent=2))
    except OSError as e:
        raise LpdcError(f"cannot write the effort config: {e}", where=str(out)) from None
    return out


def load_config(path: str | Path) -> EffortConfig:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise LpdcError(f"cannot read the effort config: {e}", where=str(path)) from None
    return from_json(data, where=str(path))
