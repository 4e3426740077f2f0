"""Which channels of a conv can be removed, and every edit removing them needs (analysis only).

Removing output channels R of conv P changes every tensor those channels flow into. Starting at
P's output, the walk follows each use:

    batch_norm, channel-wise activations, pooling, dropout, identity -> slice per-channel params, go on
    depthwise conv (one filter per channel)                           -> drop those filters, go on
    concat on channels                                                -> R shifted by the input's offset, go on
    flatten(axis=1) of N,C,H,W                                         -> R becomes the columns c*H*W + [0, H*W)
    conv (group 1)                                                     -> drop input channels R of its weights (stop)
    fully_connected                                                    -> drop weight columns R (stop)
    anything else (add, mul, reshape, a graph output, ...)             -> not prunable

A residual add needs its two operands' channels aligned, so a conv whose output reaches an add is
left alone: in a ResNet that prunes exactly the inner convs of each block (channels that must stay
aligned are pruned together or not at all; here: not at all).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ...ir import Graph, Node, Value
from ...ir.registry import ELEMENTWISE

PASS_THROUGH = frozenset({"max_pool", "avg_pool", "global_avg_pool", "global_max_pool", "dropout", "identity"})


class NotPrunable(Exception):
    """Raised inside the walk: the channels cannot be removed (the message says why)."""


@dataclass(frozen=True)
class Slice:
    """Keep only `keep` along `axis` of constant input `index` of `node`."""

    node: Node
    index: int
    axis: int
    keep: np.ndarray


@dataclass
class ChannelPlan:
    """The edits that remove output channels `removed` of conv `conv`."""

    conv: Node
    removed: np.ndarray
    slices: list[Slice] = field(default_factory=list)
    groups: dict[int, int] = field(default_factory=dict)  # id(depthwise node) -> its new group
    depthwise: list[Node] = field(default_factory=list)


def _keep(size: int, removed: np.ndarray) -> np.ndarray:
    return np.setdiff1d(np.arange(size), removed)


def _channel_slices(graph: Graph, node: Node, first: int, channels: int, removed: np.ndarray,
                    plan: ChannelPlan) -> None:
    """Slice per-channel constant inputs `first`.. of `node` (scalars are left alone)."""
    for i in range(first, len(node.inputs)):
        v = node.inputs[i]
        if v is None:
            continue
        data = graph.const_data(v)
        if data is None:
            raise NotPrunable(f"input {i} of '{node.name}' is not a constant")
        if data.size == 1:
            continue
        if data.shape[0] != channels or data.size != channels:
            raise NotPrunable(f"input {i} of '{node.name}' is not per-channel {list(data.shape)}")
        plan.slices.append(Slice(node, i, 0, _keep(channels, removed)))


def _only_use(node: Node, v: Value) -> int:
    idx = [i for i, u in enumerate(node.inputs) if u is v]
    if len(idx) != 1:
        raise NotPrunable(f"'{node.name}' reads %{v.name} {len(idx)} times")
    return idx[0]


def _walk(graph: Graph, v: Value, removed: np.ndarray, plan: ChannelPlan) -> None:
    """Follow channels `removed` of value `v` (channel axis 1) to every consumer."""
    if v in graph.outputs:
        raise NotPrunable(f"%{v.name} is a graph output")
    channels = v.type.shape[1]
    for u in v.users:
        i = _only_use(u, v)
        _visit(graph, u, i, v, channels, removed, plan)


def _visit(graph: Graph, u: Node, i: int, v: Value, channels: int, removed: np.ndarray,
           plan: ChannelPlan) -> None:
    op = u.op
    if op == "conv" and i == 0:
        w = graph.const_data(u.inputs[1])
        if w is None:
            raise NotPrunable(f"'{u.name}' has no constant weights")
        if u.attrs["group"] == 1:
            plan.slices.append(Slice(u, 1, 1, _keep(channels, removed)))
            return
        if u.attrs["group"] == channels and w.shape[0] == channels and u.inputs[3:4] in ((), (None,)):
            plan.slices.append(Slice(u, 1, 0, _keep(channels, removed)))
            _channel_slices(graph, u, 2, channels, removed, plan)
            plan.groups[id(u)] = channels - len(removed)
            plan.depthwise.append(u)
            _walk(graph, u.outputs[0], removed, plan)
            return
        raise NotPrunable(f"grouped conv '{u.name}' mixes channels")
    if op == "fully_connected" and i == 0:
        cols = _columns(v, u.attrs["axis"], removed)
        k = graph.const_data(u.inputs[1]).shape[1]
        plan.slices.append(Slice(u, 1, 1, _keep(k, cols)))
        return
    if op == "batch_norm" and i == 0:
        _channel_slices(graph, u, 1, channels, removed, plan)
    elif op == "concat" and u.attrs["axis"] % v.type.rank == 1:
        offset = sum(x.type.shape[1] for x in u.inputs[:i])
        _walk(graph, u.outputs[0], removed + offset, plan)
        return
    elif op == "flatten" and u.attrs["axis"] == 1 and v.type.rank == 4:
        _walk(graph, u.outputs[0], _columns(v, 1, removed), plan)
        return
    elif not (op in PASS_THROUGH or (u.schema.has(ELEMENTWISE) and sum(x is not None for x in u.inputs) == 1)):
        raise NotPrunable(f"channels reach '{u.name}' ({op})")
    _walk(graph, u.outputs[0], removed, plan)


def _columns(v: Value, axis: int, removed: np.ndarray) -> np.ndarray:
    """Flattened column indices of channels `removed` of `v` (N, C, ...) flattened from axis 1."""
    if axis % max(v.type.rank, 1) != 1:
        raise NotPrunable(f"%{v.name} is flattened from axis {axis}, not the channel axis")
    inner = int(np.prod(v.type.shape[2:], dtype=np.int64))
    return (removed[:, None] * inner + np.arange(inner)[None, :]).reshape(-1)


def plan_channels(graph: Graph, conv: Node, removed: np.ndarray) -> ChannelPlan:
    """The edits removing output channels `removed` of `conv`; NotPrunable if it cannot be done."""
    if conv.op != "conv" or conv.attrs["group"] != 1:
        raise NotPrunable(f"'{conv.name}' is not a plain (group 1) conv")
    if len(conv.inputs) > 3 and conv.inputs[3] is not None:
        raise NotPrunable(f"'{conv.name}' adds a residual")
    w = graph.const_data(conv.inputs[1])
    if w is None:
        raise NotPrunable(f"'{conv.name}' has no constant weights")
    o = w.shape[0]
    removed = np.unique(np.asarray(removed, dtype=np.int64))
    if removed.size == 0 or removed.size >= o:
        raise NotPrunable(f"'{conv.name}': removing {removed.size} of {o} channels")
    plan = ChannelPlan(conv, removed)
    plan.slices.append(Slice(conv, 1, 0, _keep(o, removed)))
    _channel_slices(graph, conv, 2, o, removed, plan)
    _walk(graph, conv.outputs[0], removed, plan)
    return plan
