"""Run a TvmExecutable out of one preallocated arena laid out by plan-memory.

The planner reasons with NumPy's semantics: a view op (flatten, reshape) shares its input's
bytes and an elementwise op may overwrite an input that dies there. On the TVM side a 4-D value
sits in its slot in NHWC order, flatten is a real kernel that permutes, and a kernel must not
write over an input it still reads in another order. So every write into a slot first asks who
holds the slot's buffer now: it may evict only values that are dead, or, for a kernel that reads
element k of an input only to write element k of its output, that very input. A write that is not
safe goes to a fresh array, as without a plan, and is recorded in `misses` (the tests expect none
for the zoo models). Not thread-safe: one arena per executable, reused by every run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ...errors import LpdcGraphError
from ...ir import Value, dtypes
from ...ir.registry import ELEMENTWISE
from ...passes.plan_memory import MemoryPlan
from .build import Step
from .lower import is_act4, nhwc_shape

_COPY_OPS = ("identity", "dropout")


class TvmArena:
    """The arena of one TvmExecutable: planned slots, and which values each buffer holds this run."""

    def __init__(self, plan: MemoryPlan, steps: Sequence[Step], outputs: Sequence[Value]) -> None:
        from .executable import aligned_empty

        if plan.alignment % 64 or plan.bits is not None:
            raise LpdcGraphError(f"a TVM arena needs a plan of the graph's own dtypes aligned to 64 bytes, got "
                                 f"alignment {plan.alignment} and bits {plan.bits}")
        self.plan = plan
        self.data = aligned_empty((max(plan.arena_bytes, 1),), np.uint8)
        self._last: dict[str, float] = {}  # value name -> index of the last step reading it
        for i, s in enumerate(steps):
            for v in s.reads():
                self._last[v.name] = i
        self._last.update(dict.fromkeys((v.name for v in outputs), math.inf))  # the caller reads them last
        self._views: dict[tuple[str, bool], np.ndarray | None] = {}
        self._held: dict[int, set[str]] = {}  # buffer id -> names of the values whose data it holds now
        self.misses: list[str] = []  # values the last run could not place (written to fresh arrays)

    def reset(self) -> None:
        """Start a run: every slot is free (the previous run's outputs were copied out)."""
        self._held.clear()
        self.misses.clear()

    def slot(self, v: Value, nhwc: bool) -> np.ndarray | None:
        """v's slot as an array in NHWC (4-D activations) or logical storage; None if unplanned."""
        key = (v.name, nhwc)
        if key not in self._views:
            offset = self.plan.offsets.get(v.name)
            view = None
            if offset is not None:
                dt = dtypes.to_numpy(v.type.dtype)
                shape = nhwc_shape(v) if nhwc else tuple(v.type.shape)
                view = self.data[offset:offset + v.type.size * dt.itemsize].view(dt).reshape(shape)
            self._views[key] = view
        return self._views[key]

    def output_slot(self, s: Step, step: int, args: Sequence[np.ndarray | None]) -> np.ndarray | None:
        """The slot the TVM kernel of `s` (the step-th) may write its output into, given its arguments."""
        v = s.output
        out = self.slot(v, is_act4(v))
        if out is None or out.dtype != np.float32 or not self._evictable(v, step, reading=True):
            return self._miss(v)
        for a in args:
            if a is not None and np.may_share_memory(a, out) and not _same_order(s, a, out):
                return self._miss(v)
        return out

    def hold(self, v: Value) -> None:
        """v's data now fills its slot (after the kernel ran, or after a copy into it)."""
        self._held[self.plan.buffer_ids[v.name]] = {v.name}

    def place(self, v: Value, nhwc: bool, data: np.ndarray, step: int) -> np.ndarray | None:
        """Copy `data` (v in the given storage) into v's slot if it is free at `step`; None if not."""
        slot = self.slot(v, nhwc)
        if (slot is None or slot.dtype != data.dtype or np.may_share_memory(data, slot)
                or not self._evictable(v, step, reading=False)):
            return None
        np.copyto(slot, data)
        self.hold(v)
        return slot

    def adopt(self, v: Value, r: np.ndarray) -> np.ndarray:
        """A NumPy fallback's result: kept, or copied when it views arena memory other than v's own slot."""
        if not np.may_share_memory(r, self.data):
            return r
        slot = self.slot(v, False)
        if (slot is not None and r.flags.c_contiguous and r.shape == slot.shape and r.dtype == slot.dtype
                and r.ctypes.data == slot.ctypes.data):
            self._held.setdefault(self.plan.buffer_ids[v.name], set()).add(v.name)  # a view in place
            return r
        return r.copy()  # a view into a slot that may be reused while the result is still live

    def copy_out(self, a: np.ndarray) -> np.ndarray:
        """A graph output for the caller: never a view into the arena the next run overwrites."""
        return a.copy() if np.may_share_memory(a, self.data) else a

    def _evictable(self, v: Value, step: int, reading: bool) -> bool:
        """Every other value held in v's buffer is dead at `step`. `reading`: one read by this very
        step may go too (the caller checks that the kernel reads it in its own order); a layout
        copy made before the step runs (`reading` False) must keep it, and never overwrites v itself."""
        held = self._held.get(self.plan.buffer_ids[v.name], ())
        if not reading and v.name in held:
            return False
        return all(self._last.get(u, -1) < step or (reading and self._last.get(u, -1) == step)
                   for u in held if u != v.name)

    def _miss(self, v: Value) -> np.ndarray | None:
        self.misses.append(v.name)
        return None


def _same_order(s: Step, a: np.ndarray, out: np.ndarray) -> bool:
    """Whether the kernel may write over argument `a` in place: `a` is exactly the output's memory
    and output element k depends only on element k of `a` (elementwise; flatten without a
    transpose, i.e. H*W == 1 or C == 1)."""
    if a.ctypes.data != out.ctypes.data or a.nbytes != out.nbytes or a.dtype != out.dtype:
        return False
    node = s.node
    if a.shape == out.shape and (node.schema.has(ELEMENTWISE) or node.op in _COPY_OPS):
        return True
    if node.op == "flatten" and a.ndim == 4:
        _, h, w, c = a.shape
        return h * w == 1 or c == 1
    return False
