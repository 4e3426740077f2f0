"""Data movement: const, identity, dropout, concat, split, slice, flatten, reshape, transpose,
squeeze, unsqueeze, pad, shape, gather, cast, and the reductions used in shape arithmetic."""

from __future__ import annotations

from typing import Any

from .. import dtypes
from ..registry import LAYOUT_AGNOSTIC, PURE, SHAPE_ONLY, Attr, FlopCount, register_op
from ..types import QuantParams, TensorType
from . import _shape as S

_MOVE = (PURE, SHAPE_ONLY)


@register_op("const", family="tensor", inputs=(), attrs={"param": Attr("", "str")}, traits=(PURE,))
def _infer_const(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """A constant whose data is `graph.params[param]`; its type is set by the graph, not inferred."""
    raise AssertionError("const types come from their data")  # Graph.add_const types constants


@register_op("identity", family="tensor", inputs=("x",), traits=_MOVE + (LAYOUT_AGNOSTIC,))
def _infer_identity(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """y = x."""
    return [S.present(ins[0], "x")]


@register_op(
    "dropout", family="tensor", inputs=("x",), attrs={"ratio": Attr(0.5, "float")}, traits=_MOVE + (LAYOUT_AGNOSTIC,)
)
def _infer_dropout(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Identity at inference."""
    return [S.present(ins[0], "x")]


@register_op("concat", family="tensor", inputs=("x",), variadic=True, attrs={"axis": Attr(1, "int")}, traits=_MOVE)
def _infer_concat(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Join along `axis`; all other dimensions must agree."""
    ts = [S.present(t, f"x{i}") for i, t in enumerate(ins)]
    dtype = S.same_dtype(ts, "concat")
    rank = ts[0].rank
    axis = S.norm_axis(attrs["axis"], rank)
    for t in ts[1:]:
        S.require(
            t.rank == rank and all(t.shape[i] == ts[0].shape[i] for i in range(rank) if i != axis),
            f"concat on axis {axis}: shapes {[list(t.shape) for t in ts]} disagree off the axis",
        )
    shape = list(ts[0].shape)
    shape[axis] = sum(t.shape[axis] for t in ts)
    return [TensorType(tuple(shape), dtype, ts[0].layout)]


@register_op(
    "split", family="tensor", inputs=("x",), attrs={"axis": Attr(1, "int"), "sizes": Attr([], "ints")}, traits=_MOVE
)
def _infer_split(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Cut along `axis` into pieces of the given sizes (one output each)."""
    x = S.present(ins[0], "x")
    axis = S.norm_axis(attrs["axis"], x.rank)
    sizes = attrs["sizes"]
    S.require(
        len(sizes) >= 1 and all(s >= 0 for s in sizes) and sum(sizes) == x.shape[axis],
        f"split sizes {sizes} must be non-negative and sum to {x.shape[axis]}",
    )
    return [x.with_shape(x.shape[:axis] + (s,) + x.shape[axis + 1 :]) for s in sizes]


def slice_bounds(dim: int, start: int, end: int, step: int) -> range:
    """ONNX/NumPy slice clamping for one axis."""
    S.require(step != 0, "slice step must not be 0")
    return range(dim)[slice(start, end, step)]


@register_op(
    "slice",
    family="tensor",
    inputs=("x",),
    attrs={"starts": Attr([], "ints"), "ends": Attr([], "ints"), "axes": Attr([], "ints"), "steps": Attr([], "ints")},
    traits=_MOVE,
)
def _infer_slice(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """x[starts:ends:steps] on `axes` (all axes in order when empty), NumPy clamping."""
    x = S.present(ins[0], "x")
    starts, ends = attrs["starts"], attrs["ends"]
    axes = attrs["axes"] or list(range(len(starts)))
    steps = attrs["steps"] or [1] * len(starts)
    S.require(len(starts) == len(ends) == len(axes) == len(steps), "slice starts/ends/axes/steps lengths differ")
    shape = list(x.shape)
    seen = set()
    for st, en, ax, sp in zip(starts, ends, axes, steps, strict=True):
        ax = S.norm_axis(ax, x.rank)
        S.require(ax not in seen, f"slice names axis {ax} twice")
        seen.add(ax)
        shape[ax] = len(slice_bounds(x.shape[ax], st, en, sp))
    return [x.with_shape(tuple(shape))]


@register_op("flatten", family="tensor", inputs=("x",), attrs={"axis": Attr(1, "int")}, traits=_MOVE)
def _infer_flatten(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """To 2-D: dimensions before `axis` multiply into rows, the rest into columns."""
    x = S.present(ins[0], "x")
    axis = S.norm_axis(attrs["axis"], x.rank + 1)
    return [TensorType((S.numel(x.shape[:axis]), S.numel(x.shape[axis:])), x.dtype, None, _keep_tensor_quant(x))]


def _keep_tensor_quant(x: TensorType) -> QuantParams | None:
    return x.quant if x.quant is not None and x.quant.axis is None else None


def resolve_reshape(in_shape: tuple[int, ...], spec: list[int], allowzero: bool = False) -> tuple[int, ...]:
    """ONNX Reshape rules: 0 copies the input dimension (unless allowzero), -1 is inferred."""
    out = [in_shape[i] if (d == 0 and not allowzero and i < len(in_shape)) else d for i, d in enumerate(spec)]
    S.require(out.count(-1) <= 1 and all(d >= -1 for d in out), f"bad reshape target {spec}")
    total = S.numel(in_shape)
    if -1 in out:
        known = S.numel([d for d in out if d != -1])
        S.require(known > 0 and total % known == 0, f"cannot reshape {list(in_shape)} to {spec}")
        out[out.index(-1)] = total // known
    S.require(S.numel(out) == total, f"cannot reshape {list(in_shape)} ({total} elements) to {spec}")
    return tuple(out)


@register_op(
    "reshape",
    family="tensor",
    inputs=("x",),
    attrs={"shape": Attr([], "ints"), "allowzero": Attr(False, "bool")},
    traits=_MOVE,
)
def _infer_reshape(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Reinterpret with a new shape (0 = keep that dimension, -1 = inferred)."""
    x = S.present(ins[0], "x")
    return [
        TensorType(resolve_reshape(x.shape, attrs["shape"], attrs["allowzero"]), x.dtype, None, _keep_tensor_quant(x))
    ]


@register_op("transpose", family="tensor", inputs=("x",), attrs={"perm": Attr([], "ints")}, traits=_MOVE)
def _infer_transpose(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Permute axes (reverse them when perm is empty); also Caffe's Permute."""
    x = S.present(ins[0], "x")
    perm = attrs["perm"] or list(range(x.rank))[::-1]
    S.require(sorted(perm) == list(range(x.rank)), f"transpose perm {perm} is not a permutation of rank {x.rank}")
    return [TensorType(tuple(x.shape[p] for p in perm), x.dtype, None, _keep_tensor_quant(x))]


@register_op("squeeze", family="tensor", inputs=("x",), attrs={"axes": Attr([], "ints")}, traits=_MOVE)
def _infer_squeeze(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Drop the given size-1 axes (all size-1 axes when empty)."""
    x = S.present(ins[0], "x")
    axes = {S.norm_axis(a, x.rank) for a in attrs["axes"]} or {i for i, d in enumerate(x.shape) if d == 1}
    S.require(all(x.shape[a] == 1 for a in axes), f"squeeze axes {sorted(axes)} of {list(x.shape)} are not all 1")
    return [TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype, None, _keep_tensor_quant(x))]


@register_op("unsqueeze", family="tensor", inputs=("x",), attrs={"axes": Attr([], "ints")}, traits=_MOVE)
def _infer_unsqueeze(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Insert size-1 axes at the given positions of the output."""
    x = S.present(ins[0], "x")
    rank = x.rank + len(attrs["axes"])
    axes = sorted(S.norm_axis(a, rank) for a in attrs["axes"])
    S.require(len(set(axes)) == len(axes), f"unsqueeze axes {attrs['axes']} repeat")
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return [TensorType(tuple(shape), x.dtype, None, _keep_tensor_quant(x))]


@register_op(
    "pad",
    family="tensor",
    inputs=("x",),
    attrs={
        "pads": Attr([], "ints"),
        "mode": Attr("constant", "str", ("constant", "reflect", "edge", "wrap")),
        "value": Attr(0.0, "float"),
    },
    traits=_MOVE,
)
def _infer_pad(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Pad each axis: pads = [begin_0, ..., begin_n, end_0, ..., end_n] (ONNX order); negatives crop."""
    x = S.present(ins[0], "x")
    pads = attrs["pads"]
    S.require(len(pads) == 2 * x.rank, f"pad needs {2 * x.rank} pads for rank {x.rank}, got {len(pads)}")
    shape = tuple(d + pads[i] + pads[i + x.rank] for i, d in enumerate(x.shape))
    S.require(all(d >= 0 for d in shape), f"pads {pads} crop {list(x.shape)} below zero")
    if attrs["mode"] == "reflect":
        S.require(
            all(max(pads[i], pads[i + x.rank]) < max(d, 1) or d == 0 for i, d in enumerate(x.shape)),
            "reflect padding must be smaller than the axis",
        )
    return [x.with_shape(shape)]


@register_op(
    "shape", family="tensor", inputs=("x",), attrs={"start": Attr(0, "int"), "end": Attr(None, "int")}, traits=(PURE,)
)
def _infer_shape(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """The input's shape as an i64 vector (sliced by start/end as in ONNX Shape-15)."""
    x = S.present(ins[0], "x")
    return [TensorType((len(x.shape[slice(attrs["start"], attrs["end"])]),), "i64")]


@register_op("gather", family="tensor", inputs=("x", "indices"), attrs={"axis": Attr(0, "int")}, traits=(PURE,))
def _infer_gather(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """ONNX Gather: take `indices` (negative wrap) along `axis`."""
    x, idx = S.present(ins[0], "x"), S.present(ins[1], "indices")
    S.require(dtypes.is_int(idx.dtype), f"gather indices must be integers, got {idx.dtype}")
    axis = S.norm_axis(attrs["axis"], x.rank)
    return [TensorType(x.shape[:axis] + idx.shape + x.shape[axis + 1 :], x.dtype)]


@register_op("cast", family="tensor", inputs=("x",), attrs={"to": Attr("f32", "str")}, traits=(PURE,))
def _infer_cast(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
    """Convert the element type (float to int truncates toward zero, as NumPy's astype)."""
    x = S.present(ins[0], "x")
    dtypes.check(attrs["to"])
    return [TensorType(x.shape, attrs["to"], x.layout)]


def _reduce_flops(kind: str):
    def fn(ins: list[TensorType | None], outs: list[TensorType], attrs: dict[str, Any]) -> FlopCount:
        n = S.present(ins[0], "x").size - outs[0].size
        if kind in ("max", "min"):
            return FlopCount(cmp=n)
        return FlopCount(add=n, div=outs[0].size if kind == "mean" else 0)

    return fn


def _make_reduce(name: str):
    def infer(ins: list[TensorType | None], attrs: dict[str, Any]) -> list[TensorType]:
        x = S.present(ins[0], "x")
        axes = {S.norm_axis(a, x.rank) for a in attrs["axes"]} or set(range(x.rank))
        shape = [1 if i in axes else d for i, d in enumerate(x.shape) if attrs["keepdims"] or i not in axes]
        return [TensorType(tuple(shape), x.dtype)]

    return infer


for _name in ("reduce_mean", "reduce_sum", "reduce_max", "reduce_min"):
    register_op(
        _name,
        family="tensor",
        inputs=("x",),
        attrs={"axes": Attr([], "ints"), "keepdims": Attr(True, "bool")},
        traits=(PURE,),
        flops=_reduce_flops(_name[7:]),
        doc=f"{_name[7:]} over `axes` (all when empty), keeping them as size 1 when keepdims",
    )(_make_reduce(_name))
