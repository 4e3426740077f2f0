"""The op registry: every op's inputs, attributes (with defaults), traits, type inference and cost.

An op is declared once, next to its family (ir/ops/*.py), with `@register_op`. Backends look up
kernels by the same name; passes match on names and traits; the analyzer and the cost model read
`flops` and `bytes`.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import LpdcTypeError, LpdcUnsupportedError
from .types import TensorType

# Traits passes match on.
PURE = "pure"  # no side effects; safe to fold, dedupe, delete when unused
ELEMENTWISE = "elementwise"  # output[i] depends only on inputs[i] (after broadcasting)
LAYOUT_AGNOSTIC = "layout_agnostic"  # works on any layout unchanged (ReLU, add, ...)
HAS_WEIGHTS = "has_weights"  # takes learned constants (conv, fc, bn, ...)
ACTIVATION = "activation"  # a unary activation that can fuse into a producer's epilogue
SHAPE_ONLY = "shape_only"  # moves or reinterprets data without arithmetic


@dataclass(frozen=True)
class FlopCount:
    """Operation counts, kept apart because their costs differ by an order of magnitude."""

    mul: int = 0
    add: int = 0
    div: int = 0
    cmp: int = 0
    other: int = 0  # exp, sqrt, log, ...
    # Of the mul/add above, the multiply-accumulates of dot products (conv, fc, gemm, matmul):
    # the "MACs" that papers report. Not added again into `total`.
    mac: int = 0

    def __add__(self, o: FlopCount) -> FlopCount:
        return FlopCount(self.mul + o.mul, self.add + o.add, self.div + o.div, self.cmp + o.cmp,
                         self.other + o.other, self.mac + o.mac)

    @property
    def total(self) -> int:
        return self.mul + self.add + self.div + self.cmp + self.other


@dataclass(frozen=True)
class Attr:
    """An attribute declaration: default value and kind (int, float, str, bool, ints, floats, strs, any)."""

    default: Any
    kind: str
    choices: tuple[str, ...] | None = None


# Annotations any node may carry: written by primitive selection, read by backends.
COMMON_ATTRS: dict[str, Attr] = {
    "primitive": Attr("", "str"),
    "device": Attr("", "str"),
    "split": Attr([], "floats"),
}

InferFn = Callable[[list[TensorType | None], dict[str, Any]], list[TensorType]]
FlopFn = Callable[[list[TensorType | None], list[TensorType], dict[str, Any]], FlopCount]


@dataclass(frozen=True)
class OpSchema:
    """What the IR knows about one op."""

    name: str
    family: str
    inputs: tuple[str, ...]
    min_inputs: int
    variadic: bool
    attrs: dict[str, Attr]
    traits: frozenset[str]
    infer: InferFn
    flop_fn: FlopFn | None = None
    doc: str = ""
    optional_inputs: frozenset[int] = field(default_factory=frozenset)

    def has(self, trait: str) -> bool:
        return trait in self.traits

    def flops(self, ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
        return self.flop_fn(ins, outs, attrs) if self.flop_fn else FlopCount()

    def bytes(self, ins: list[TensorType | None], outs: list[TensorType]) -> int:
        """Bytes read and written, every operand touched once (the cost model's lower bound)."""
        return sum(t.nbytes for t in ins if t is not None) + sum(t.nbytes for t in outs)

    def check_arity(self, n: int) -> None:
        if n < self.min_inputs or (not self.variadic and n > len(self.inputs)):
            want = f"at least {self.min_inputs}" if self.variadic else (
                f"{self.min_inputs}" if self.min_inputs == len(self.inputs)
                else f"{self.min_inputs} to {len(self.inputs)}")
            raise LpdcTypeError(f"op '{self.name}' takes {want} inputs ({', '.join(self.inputs)}), got {n}")

    def normalize_attrs(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """Check names and kinds, fill defaults, copy lists; raise LpdcTypeError on bad attributes."""
        out: dict[str, Any] = {}
        decls = {**self.attrs, **COMMON_ATTRS}
        unknown = sorted(set(attrs) - set(decls))
        if unknown:
            raise LpdcTypeError(
                f"op '{self.name}' has no attribute {unknown[0]!r} (it has: {', '.join(sorted(self.attrs))})"
            )
        for key, decl in decls.items():
            value = attrs.get(key, decl.default)
            out[key] = _coerce(self.name, key, decl, value)
        return out


def _coerce(op: str, key: str, decl: Attr, value: Any) -> Any:
    def bad(what: str) -> LpdcTypeError:
        return LpdcTypeError(f"attribute {key!r} of op '{op}' must be {what}, got {value!r}")

    kind = decl.kind
    if kind == "int":
        if value is None and decl.default is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
            raise bad("an integer")
        return int(value)
    if kind == "float":
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if kind == "bool":
        if isinstance(value, int | bool) and value in (0, 1):
            return bool(value)
        raise bad("a boolean")
    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        if decl.choices and value not in decl.choices:
            raise bad(f"one of {', '.join(decl.choices)}")
        return value
    if kind in ("ints", "floats", "strs"):
        if not isinstance(value, list | tuple):
            raise bad(f"a list ({kind})")
        elem = {"ints": Attr(0, "int"), "floats": Attr(0.0, "float"), "strs": Attr("", "str")}[kind]
        return [_coerce(op, key, elem, v) for v in value]
    return _deep_list(value)


def _deep_list(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return [_deep_list(v) for v in value]
    return value


REGISTRY: dict[str, OpSchema] = {}


def register_op(
    name: str,
    *,
    family: str,
    inputs: Sequence[str],
    min_inputs: int | None = None,
    variadic: bool = False,
    attrs: dict[str, Attr] | None = None,
    traits: Sequence[str] = (PURE,),
    flops: FlopFn | None = None,
    doc: str | None = None,
) -> Callable[[InferFn], InferFn]:
    """Declare an op; the decorated function is its type inference."""

    def deco(infer: InferFn) -> InferFn:
        if name in REGISTRY:
            raise ValueError(f"op {name!r} registered twice")
        REGISTRY[name] = OpSchema(
            name=name,
            family=family,
            inputs=tuple(inputs),
            min_inputs=len(inputs) if min_inputs is None else min_inputs,
            variadic=variadic,
            attrs=dict(attrs or {}),
            traits=frozenset(traits),
            infer=infer,
            flop_fn=flops,
            doc=(doc or infer.__doc__ or "").strip(),
        )
        return infer

    return deco


def get_op(name: str) -> OpSchema:
    """The schema of `name`; an unknown name is an LpdcUnsupportedError listing near matches."""
    _load_ops()
    schema = REGISTRY.get(name)
    if schema is None:
        near = difflib.get_close_matches(name, list(REGISTRY), n=3, cutoff=0.5)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise LpdcUnsupportedError(f"unknown op '{name}'{hint}")
    return schema


def all_ops() -> dict[str, OpSchema]:
    _load_ops()
    return dict(REGISTRY)


def _load_ops() -> None:
    from . import ops  # noqa: F401  (importing registers every family)


def elements(t: TensorType | None) -> int:
    return 0 if t is None else math.prod(t.shape)
