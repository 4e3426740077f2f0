"""What a measurement is of: the device, the layer signature and the choice, as canonical keys.

Each is a small frozen dataclass whose `key` is canonical JSON (sorted keys, no spaces), so the
same measurement always has the same database key whatever process or machine wrote it.

- `Fingerprint`: the device measured on: lpdc target name, board key (RPC tracker key, "local"
  on the host), CPU and GPU model. Costs measured on one board never leak onto another.
- `Signature`: the layer: op plus the geometry of the catalog's `ConvSpec` / `FCSpec` (shapes,
  stride, pad, dilation, groups, dtype, weight density); or, verbatim, the string the
  select-primitives pass names a layer or a layout conversion by (`passes/select/costs.py`:
  op, logical input types, attributes, weight density), so its lookups hit these rows exactly.
- `Choice`: how the layer runs: primitive, layout, device, split ratio and kernel config
  (tile sizes of a TVM schedule). The selection pass's labels parse into one: `"im2col@NCHW"`,
  `"-@NHWC"` (an op without primitives, in NHWC), `"NCHW->NHWC"` (a layout conversion).
"""

from __future__ import annotations

import dataclasses
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import LpdcError

__all__ = ["CONVERT", "Choice", "Fingerprint", "Signature", "auto_clock", "canonical", "host_cpu_model"]

CONVERT = "layout_convert"  # the primitive name of a layout conversion choice
# The catalog's spec classes and the op each stands for.
_SPEC_OPS = {"ConvSpec": "conv", "FCSpec": "fully_connected"}


def _plain(obj: Any) -> Any:
    """JSON-ready form: tuples to lists, numpy scalars to Python, mappings with string keys."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _plain(dataclasses.asdict(obj))
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalar
        return obj.item()
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    raise LpdcError(f"cannot use {type(obj).__name__} value {obj!r} in an autotune key")


def canonical(obj: Any) -> str:
    """Canonical JSON text of `obj`: equal values give equal strings."""
    return json.dumps(_plain(obj), sort_keys=True, separators=(",", ":"))


def _parse_key(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError) as e:
        raise LpdcError(f"malformed {what} key {text!r}: {e}") from None
    if not isinstance(value, dict):
        raise LpdcError(f"malformed {what} key {text!r}: not a JSON object")
    return value


@lru_cache(maxsize=1)
def host_cpu_model() -> str:
    """The host CPU's model name (from /proc/cpuinfo where there is one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _blas_threads() -> int:
    from ..passes.select.measure import blas_threads

    return blas_threads()


def auto_clock(threads: int) -> str:
    """The clock host timings use, as the selection pass's own benchmark chooses it: process CPU
    time when the BLAS runs one thread (other processes' load then cannot inflate a timing),
    wall time otherwise (CPU time would add up the threads)."""
    return "cpu" if threads == 1 else "wall"


@dataclass(frozen=True)
class Fingerprint:
    """The device a measurement was taken on."""

    target: str
    board: str = "local"
    cpu: str = ""
    gpu: str = ""
    threads: int = 0  # BLAS threads on the host (NumPy timings depend on them); 0 = not recorded
    clock: str = "wall"  # "wall", or "cpu" (process CPU time: what a shared host's timings mean)

    @classmethod
    def host(cls, target: str = "numpy", threads: int | None = None, clock: str = "auto") -> Fingerprint:
        """This machine; for the numpy target with its BLAS thread count and timing clock."""
        if target != "numpy":
            return cls(target, "local", host_cpu_model(), "", 0, "wall")
        threads = threads or _blas_threads()
        return cls(target, "local", host_cpu_model(), "", threads, auto_clock(threads) if clock == "auto" else clock)

    @property
    def key(self) -> str:
        return canonical(self)

    @classmethod
    def from_key(cls, text: str) -> Fingerprint:
        d = _parse_key(text, "device")
        return cls(str(d.get("target", "")), str(d.get("board", "local")), str(d.get("cpu", "")),
                   str(d.get("gpu", "")), int(d.get("threads", 0) or 0), str(d.get("clock", "wall")))

    @property
    def label(self) -> str:
        where = "host" if self.board == "local" else f"board key {self.board!r}"
        extra = (f", {self.threads} BLAS threads" if self.threads else "") + \
            (f", {self.clock} clock" if self.clock != "wall" else "")
        return f"{self.target} on {where} ({self.cpu or 'unknown CPU'}{extra})"


@dataclass(frozen=True)
class Signature:
    """A layer's identity for costing: `op` plus its geometry (`params`, JSON-ready values), or
    an opaque `text` (the selection pass's layer signature), which then is the key itself."""

    op: str
    params: tuple[tuple[str, Any], ...] = ()
    text: str = ""

    @classmethod
    def of(cls, op: str, **params: Any) -> Signature:
        plain = _plain(params)
        return cls(op, tuple(sorted((k, _freeze(v)) for k, v in plain.items())))

    @classmethod
    def from_spec(cls, spec: Any) -> Signature:
        """From a catalog `ConvSpec` / `FCSpec` (density rounded: it only selects sparse primitives)."""
        op = _SPEC_OPS.get(type(spec).__name__)
        if op is None:
            raise LpdcError(f"no layer signature for {type(spec).__name__}")
        params = _plain(spec)
        if "density" in params:
            params["density"] = round(float(params["density"]), 2)
        return cls.of(op, **params)

    @classmethod
    def layout_convert(cls, shape: tuple[int, ...], dtype: str, src: str, dst: str) -> Signature:
        return cls.of("layout_convert", shape=list(shape), dtype=dtype, src=src, dst=dst)

    @classmethod
    def coerce(cls, value: Any) -> Signature:
        """A Signature from itself, its key, a {op: ..., ...} mapping or a catalog spec."""
        if isinstance(value, Signature):
            return value
        if isinstance(value, str) and not value.startswith("{"):
            if not value.strip():
                raise LpdcError("empty layer signature")
            return cls(value.split(None, 1)[0], (), value)
        if isinstance(value, str):
            d = _parse_key(value, "signature")
            return cls.of(str(d.pop("op", "")), **d)
        if isinstance(value, Mapping):
            d = dict(value)
            return cls.of(str(d.pop("op", "")), **d)
        return cls.from_spec(value)

    def get(self, name: str, default: Any = None) -> Any:
        return dict(self.params).get(name, default)

    def as_dict(self) -> dict[str, Any]:
        if self.text:
            return {"op": self.op, "text": self.text}
        return {"op": self.op, **_plain(dict(self.params))}

    def to_spec(self) -> Any:
        """The catalog spec this signature came from (conv and fully_connected only)."""
        from ..backends.numpy.primitives import ConvSpec, FCSpec

        d = _plain(dict(self.params))
        try:
            if self.op == "conv":
                for k in ("stride", "pad", "dilation"):
                    d[k] = tuple(d[k])
                return ConvSpec(**d)
            if self.op == "fully_connected":
                return FCSpec(**d)
        except (TypeError, KeyError) as e:
            raise LpdcError(f"signature {self.key} is not a {self.op} geometry: {e}") from None
        raise LpdcError(f"no primitive spec for op {self.op!r}", where=self.key)

    @property
    def key(self) -> str:
        return self.text or canonical(self.as_dict())

    def __str__(self) -> str:
        return self.key


def _freeze(value: Any) -> Any:
    """Hashable form of a JSON-ready value (lists to tuples, dicts to sorted item tuples)."""
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    return value


@dataclass(frozen=True)
class Choice:
    """One way to run a layer: primitive, layout, device, split ratio, kernel config."""

    primitive: str
    layout: str = ""
    device: str = ""
    split: tuple[float, ...] = ()
    config: tuple[tuple[str, Any], ...] = field(default=())

    @classmethod
    def make(cls, primitive: str, layout: str = "", device: str = "", split: tuple[float, ...] = (),
             config: Mapping[str, Any] | None = None) -> Choice:
        cfg = tuple(sorted((str(k), _freeze(_plain(v))) for k, v in (config or {}).items()))
        return cls(primitive, layout, device, tuple(float(s) for s in split), cfg)

    @classmethod
    def coerce(cls, value: Any, device: str = "") -> Choice:
        """A Choice from itself, a key, `"name@layout"`, a mapping, or an object with primitive/layout."""
        if isinstance(value, Choice):
            return value
        if isinstance(value, str) and not value.startswith("{"):
            if "@" not in value and "->" in value:  # the selection pass's layout conversion label
                return cls.make(CONVERT, value, device)
            name, _, layout = value.partition("@")
            return cls.make("" if name == "-" else name, layout, device)
        d = _parse_key(value, "choice") if isinstance(value, str) else value
        if not isinstance(d, Mapping):
            d = {k: getattr(value, k) for k in ("primitive", "layout", "device", "split", "config")
                 if hasattr(value, k)}
        return cls.make(str(d.get("primitive", "")), str(d.get("layout", "") or ""),
                        str(d.get("device", "") or device), tuple(d.get("split") or ()), d.get("config") or {})

    def with_config(self, config: Mapping[str, Any] | None) -> Choice:
        return Choice.make(self.primitive, self.layout, self.device, self.split, config)

    def without_config(self) -> Choice:
        return Choice(self.primitive, self.layout, self.device, self.split, ())

    def config_dict(self) -> dict[str, Any]:
        return _plain(dict(self.config))

    def as_dict(self) -> dict[str, Any]:
        return {"primitive": self.primitive, "layout": self.layout, "device": self.device,
                "split": list(self.split), "config": self.config_dict()}

    @property
    def key(self) -> str:
        return canonical(self.as_dict())

    @property
    def label(self) -> str:
        """Short human-readable form: `im2col@NCHW`, `tvm_conv2d@NCHW[ko=4,wi=8]`."""
        cfg = ",".join(f"{k}={v}" for k, v in self.config)
        if self.primitive == CONVERT:
            return self.layout
        return f"{self.primitive or '-'}@{self.layout}" + (f"[{cfg}]" if cfg else "")

    def __str__(self) -> str:
        return self.label
