"""Matching helpers that keep pass code short: use checks, op chains, constants, channel vectors.

    nodes = match_chain(g, conv, ("conv", "fully_connected"), "batch_norm")
    if nodes and all_const(g, nodes[1], skip=(0,)): ...

A pass matches with these, then rewrites with `passes/rewrite.py`. Every check here is
conservative: a value that is a graph output or has several users never "has a single user",
so a rewrite that consumes it cannot take it away from anyone else.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np

from ..ir import Graph, Node, TensorType, Value
from ..ir.ops._shape import nchw_axes

OpSpec = str | Collection[str]


def is_output(g: Graph, v: Value) -> bool:
    """True when `v` is one of the graph's outputs."""
    return any(o is v for o in g.outputs)


def single_user(g: Graph, v: Value) -> Node | None:
    """The only node reading `v` (read once), or None if `v` has other readers or is a graph output."""
    if len(v.users) != 1 or is_output(g, v):
        return None
    return v.users[0]


def _op_matches(node: Node, spec: OpSpec) -> bool:
    return node.op == spec if isinstance(spec, str) else node.op in spec


# Binary ops whose operands may be swapped: a chain may enter them through either operand.
COMMUTATIVE = frozenset({"add", "mul", "max", "min"})


def match_chain(g: Graph, node: Node, *ops: OpSpec) -> list[Node] | None:
    """`node` and its successors if they form the chain `ops`, each link a single-use data edge.

    Link i -> i+1 holds when node i's output is read only by node i+1 (once, and it is not a
    graph output), as its first input or as either operand of a commutative op: the shape a fold
    into node 0 needs, e.g. `match_chain(g, conv, "conv", "batch_norm")`. An op spec is a name
    or a collection of names.
    """
    if not ops or not _op_matches(node, ops[0]) or len(node.outputs) != 1:
        return None
    chain = [node]
    for spec in ops[1:]:
        v = chain[-1].output
        user = single_user(g, v)
        if user is None or not _op_matches(user, spec) or len(user.outputs) != 1:
            return None
        if user.inputs[0] is not v and not (user.op in COMMUTATIVE and user.inputs[1] is v):
            return None
        chain.append(user)
    return chain


def const(g: Graph, v: Value | None) -> np.ndarray | None:
    """The data of a constant value, else None."""
    return g.const_data(v)


def all_const(g: Graph, node: Node, skip: Collection[int] = ()) -> bool:
    """True when every present input of `node` (except the indices in `skip`) is a constant."""
    return all(v is None or i in skip or g.const_data(v) is not None for i, v in enumerate(node.inputs))


def is_float(t: TensorType) -> bool:
    """A plain floating-point tensor (no quantization): the only kind folding arithmetic may touch."""
    return t.dtype in ("f16", "f32", "f64") and t.quant is None


def input_at(node: Node, i: int) -> Value | None:
    """Input `i` of `node`, or None when absent or beyond the inputs given."""
    return node.inputs[i] if i < len(node.inputs) else None


def channel_axis(node: Node) -> int | None:
    """The output-channel axis of a conv/conv_transpose/fully_connected output, else None."""
    out = node.output.type
    if node.op in ("conv", "conv_transpose"):
        return nchw_axes(out)[0]
    if node.op == "fully_connected":
        return out.rank - 1
    return None


def channel_vector(p: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray | None:
    """`p`, already aligned to the rank of `shape`, as one value per channel of `axis`, or None.

    None when `p` varies along any other axis, or does not broadcast onto `shape` without
    enlarging it: such a parameter cannot move into per-channel weights and bias.
    """
    if p.ndim > len(shape):
        return None
    p = p.reshape((1,) * (len(shape) - p.ndim) + p.shape)
    if any(d != 1 for i, d in enumerate(p.shape) if i != axis) or p.shape[axis] not in (1, shape[axis]):
        return None
    return np.broadcast_to(p.reshape(-1), (shape[axis],))


def caffe_placed(p: np.ndarray, rank: int, axis: int) -> np.ndarray | None:
    """A Caffe scale/bias parameter laid over a rank-`rank` input from `axis` (as the kernel does)."""
    axis %= rank
    if p.ndim == 1:
        shape = [1] * rank
        shape[axis] = p.size
    elif axis + p.ndim <= rank:
        shape = [1] * axis + list(p.shape) + [1] * (rank - axis - p.ndim)
    else:
        return None
    return p.reshape(shape)


def nonnegative(g: Graph, v: Value) -> bool:
    """True when every element of `v` is known to be >= 0 (it comes out of a ReLU-like op)."""
    node = v.producer
    if node is None:
        return False
    if node.op in ("relu", "sigmoid", "hard_sigmoid", "abs", "exp", "softplus"):
        return True
    if node.op == "clip":
        return node.attrs["min"] >= 0
    act = node.attrs.get("activation", "none")
    return act in ("relu", "relu6", "sigmoid", "hard_sigmoid") or (act == "clip" and node.attrs["act_alpha"] >= 0)
