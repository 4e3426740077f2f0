"""plan-memory: assign every activation a byte offset in one arena, reusing dead buffers.

Before: a verified graph whose node list is the execution order.
After:  the graph unchanged; a `MemoryPlan` (value name -> arena offset, arena size, naive size)
        is returned by `plan_memory(graph)`, and the registered pass caches it for `get_plan(graph)`.
Preconditions: nodes in topological order (Graph.verify guarantees it).

Method:
1. Buffers. Each non-constant value needs bytes = ceil(elements * bits / 8) (its dtype's bits
   unless `bits` overrides). View ops (reshape, flatten, squeeze, unsqueeze, identity, dropout)
   alias their input's buffer: NumPy returns views and a device runtime reinterprets in place.
   With `inplace`, an elementwise op whose input buffer dies at that op (same byte size) writes
   over it, so `conv -> bn -> relu` chains need one buffer, not three.
2. Liveness. A buffer lives from the step that defines its first value to the last step that
   reads any of its values; graph inputs are defined at step -1, graph outputs live to the end.
3. Placement: greedy by size with best fit (TFLite's GreedyBySize). Buffers sorted by size,
   largest first; each takes the smallest gap between already placed buffers whose lifetimes
   overlap its own, else goes on top of them. Offsets are aligned to `alignment` bytes.

Formula: naive = sum(bytes(v) for every activation v); peak_live = max over steps of the bytes
of buffers live at that step (a lower bound for any arena); arena >= peak_live.
"""

from __future__ import annotations

import logging
import math
import weakref
from dataclasses import dataclass, field

import numpy as np

from ..errors import LpdcGraphError
from ..ir import Graph, Value, dtypes
from ..ir.registry import ELEMENTWISE
from .manager import register_pass

log = logging.getLogger(__name__)

VIEW_OPS = frozenset({"reshape", "flatten", "squeeze", "unsqueeze", "identity", "dropout"})
DEFAULT_ALIGNMENT = 64  # a cache line: keeps every buffer aligned for vector loads


def value_bytes(v: Value, bits: int | None = None) -> int:
    """Bytes of `v`'s data at `bits` per element (its own dtype's width when None)."""
    width = bits if bits is not None else 8 * dtypes.itemsize(v.type.dtype)
    return math.ceil(v.type.size * width / 8)


@dataclass
class _Buffer:
    """One arena slot: the values sharing it and the steps during which it must hold data."""

    values: list[Value]
    size: int
    start: int
    end: int
    offset: int = -1


@dataclass(frozen=True)
class MemoryPlan:
    """Where each activation lives in one arena of `arena_bytes` bytes."""

    offsets: dict[str, int]  # value name -> byte offset in the arena
    sizes: dict[str, int]  # value name -> bytes
    arena_bytes: int
    naive_bytes: int  # every activation in its own buffer
    peak_live_bytes: int  # most bytes live at one step: the floor for any reuse scheme
    buffers: int  # distinct buffers after aliasing and in-place reuse
    order: tuple[str, ...]  # node names in the planned execution order
    alignment: int = DEFAULT_ALIGNMENT
    bits: int | None = None
    lifetimes: dict[str, tuple[int, int]] = field(default_factory=dict)  # value -> its buffer's (first, last) step
    buffer_ids: dict[str, int] = field(default_factory=dict)  # value -> buffer index (aliases share one)

    @property
    def saving(self) -> float:
        """Fraction of the naive footprint the arena saves (0 when there is nothing to plan)."""
        return 1.0 - self.arena_bytes / self.naive_bytes if self.naive_bytes else 0.0

    def new_arena(self) -> Arena:
        """A zeroed arena to execute one run in (see Arena.place)."""
        return Arena(self)

    def check(self) -> None:
        """Raise LpdcGraphError if two buffers overlap in memory while both are live (a planner bug)."""
        names = sorted(self.offsets, key=lambda n: self.offsets[n])
        for i, a in enumerate(names):
            end_a = self.offsets[a] + self.sizes[a]
            for b in names[i + 1:]:
                if self.offsets[b] >= end_a:
                    break
                la, lb = self.lifetimes[a], self.lifetimes[b]
                if self.buffer_ids[a] != self.buffer_ids[b] and la[0] <= lb[1] and lb[0] <= la[1]:
                    raise LpdcGraphError(f"memory plan overlaps live values %{a} and %{b}")


class Arena:
    """One run's backing store: `place(value, array)` copies an array into its planned slot."""

    def __init__(self, plan: MemoryPlan) -> None:
        if plan.bits is not None:
            raise LpdcGraphError(f"a memory plan sized for {plan.bits}-bit elements cannot back a run; "
                                 "plan with the graph's own dtypes (bits=None)")
        self.plan = plan
        self.data = np.zeros(max(plan.arena_bytes, 1), dtype=np.uint8)

    def view(self, v: Value) -> np.ndarray | None:
        """The slot of `v` as an array of its type, or None for unplanned values (constants)."""
        offset = self.plan.offsets.get(v.name)
        if offset is None:
            return None
        dt = dtypes.to_numpy(v.type.dtype)
        nbytes = v.type.size * dt.itemsize
        return self.data[offset:offset + nbytes].view(dt).reshape(v.type.shape)

    def place(self, v: Value, array: np.ndarray) -> np.ndarray:
        """Copy `array` into v's slot and return the slot (or `array` itself if v is unplanned)."""
        slot = self.view(v)
        if slot is None or slot.dtype != array.dtype:
            return array
        np.copyto(slot, array)  # NumPy buffers overlapping copies (a view op's input is its own slot)
        return slot


def _build_buffers(g: Graph, bits: int | None, inplace: bool) -> tuple[list[_Buffer], dict[Value, _Buffer]]:
    last_step = len(g.nodes)
    last_use: dict[Value, int] = {}
    for i, node in enumerate(g.nodes):
        for v in node.inputs:
            if v is not None:
                last_use[v] = i
    for v in g.outputs:
        last_use[v] = last_step
    buf_of: dict[Value, _Buffer] = {}
    buffers: list[_Buffer] = []

    def new(v: Value, step: int) -> None:
        b = _Buffer([v], value_bytes(v, bits), step, max(step, last_use.get(v, step)))
        buffers.append(b)
        buf_of[v] = b

    for v in g.inputs:
        new(v, -1)
    for i, node in enumerate(g.nodes):
        if node.op == "const":
            continue
        for k, v in enumerate(node.outputs):
            host = _alias_target(node, k, v, buf_of, i, bits, inplace)
            if host is None:
                new(v, i)
            else:
                host.values.append(v)
                host.end = max(host.end, last_use.get(v, i))
                buf_of[v] = host
    return buffers, buf_of


def _alias_target(node, k: int, v: Value, buf_of: dict[Value, _Buffer], step: int, bits: int | None,
                  inplace: bool) -> _Buffer | None:
    """The buffer `v` may share: its input's for a view op, a dying input's for an in-place op."""
    if k != 0:
        return None
    ins = [x for x in node.inputs if x is not None and x in buf_of]
    if node.op in VIEW_OPS and ins and node.inputs[0] in buf_of:
        return buf_of[node.inputs[0]]
    if not (inplace and node.schema.has(ELEMENTWISE)):
        return None
    for x in ins:
        b = buf_of[x]
        if b.end == step and x.type.shape == v.type.shape and b.size == value_bytes(v, bits):
            return b
    return None


def _align(n: int, alignment: int) -> int:
    return -(-n // alignment) * alignment


def _place(buffers: list[_Buffer], alignment: int) -> int:
    """Greedy by size, best fit; returns the arena size."""
    placed: list[_Buffer] = []
    arena = 0
    for b in sorted(buffers, key=lambda b: (-b.size, b.start)):
        need = _align(max(b.size, 1), alignment)
        live = sorted((p for p in placed if p.start <= b.end and b.start <= p.end), key=lambda p: p.offset)
        best, best_gap, cursor = -1, math.inf, 0
        for p in live:
            gap = p.offset - cursor
            if need <= gap < best_gap:
                best, best_gap = cursor, gap
            cursor = max(cursor, _align(p.offset + p.size, alignment))
        b.offset = best if best >= 0 else cursor
        placed.append(b)
        arena = max(arena, b.offset + b.size)
    return _align(arena, alignment) if arena else 0


def _peak_live(buffers: list[_Buffer], steps: int) -> int:
    delta = np.zeros(steps + 3, dtype=np.int64)
    for b in buffers:
        delta[b.start + 1] += b.size
        delta[b.end + 2] -= b.size
    return int(np.cumsum(delta).max()) if buffers else 0


def plan_memory(graph: Graph, *, bits: int | None = None, inplace: bool = True,
                alignment: int = DEFAULT_ALIGNMENT) -> MemoryPlan:
    """Plan the activation arena of `graph` in its node order (see the module docstring)."""
    if alignment < 1 or (bits is not None and bits < 1):
        raise LpdcGraphError(f"plan-memory needs alignment >= 1 and bits >= 1, got {alignment} and {bits}")
    buffers, buf_of = _build_buffers(graph, bits, inplace)
    arena = _place(buffers, alignment)
    ids = {id(b): i for i, b in enumerate(buffers)}
    return MemoryPlan(
        offsets={v.name: b.offset for v, b in buf_of.items()},
        sizes={v.name: value_bytes(v, bits) for v in buf_of},
        arena_bytes=arena,
        naive_bytes=sum(value_bytes(v, bits) for v in buf_of),
        peak_live_bytes=_peak_live(buffers, len(graph.nodes)),
        buffers=len(buffers),
        order=tuple(n.name for n in graph.nodes),
        alignment=alignment,
        bits=bits,
        lifetimes={v.name: (b.start, b.end) for v, b in buf_of.items()},
        buffer_ids={v.name: ids[id(b)] for v, b in buf_of.items()},
    )


_PLANS: weakref.WeakKeyDictionary[Graph, tuple[tuple, MemoryPlan]] = weakref.WeakKeyDictionary()


def _signature(graph: Graph) -> tuple:
    return tuple((n.name, tuple(v.type for v in n.outputs)) for n in graph.nodes)


def get_plan(graph: Graph) -> MemoryPlan:
    """The plan the pass attached to `graph`, recomputed if the graph changed since (or never ran)."""
    cached = _PLANS.get(graph)
    sig = _signature(graph)
    if cached is None or cached[0] != sig:
        cached = (sig, plan_memory(graph))
        _PLANS[graph] = cached
    return cached[1]


@register_pass("plan-memory")
def plan_memory_pass(graph: Graph) -> Graph:
    """Plan the arena and attach it to the graph (read it back with `get_plan(graph)`)."""
    plan = plan_memory(graph)
    _PLANS[graph] = (_signature(graph), plan)
    log.info("plan-memory: arena %d bytes for %d buffers (naive %d, peak live %d)",
             plan.arena_bytes, plan.buffers, plan.naive_bytes, plan.peak_live_bytes)
    return graph
