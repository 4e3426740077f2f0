"""The TVM executable's fast path: every kernel call and every buffer fixed once, before the first run.

A graph whose steps are all TVM kernels reading NHWC activations (the usual x86 build) runs as
a flat list of calls `func(*arrays)` over buffers allocated here: each value gets a buffer from a
pool when its producer runs and gives it back after its last reader, so buffers are reused across
the graph (the order of steps is fixed), and nothing is allocated, looked up or converted per run
except staging the inputs and copying the outputs out. The general runner (executable.py) spent
5-9 us of Python per step on lookups, alignment checks and allocations: 0.37 ms of SqueezeNet's
~2 ms. One run at a time (a lock): the buffers are the program's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from ...errors import LpdcExecutionError
from ...ir import Graph, Value, dtypes
from ..numpy.executable import NodeTiming
from .build import Step
from .lower import is_act4, nhwc_shape

_ALIGN = 64


class _Pool:
    """Aligned byte buffers handed out by size and returned for reuse (best fit among the free)."""

    def __init__(self) -> None:
        self.free: list[np.ndarray] = []
        self.total = 0

    def take(self, nbytes: int) -> np.ndarray:
        fits = [i for i, b in enumerate(self.free) if b.nbytes >= nbytes]
        if fits:
            return self.free.pop(min(fits, key=lambda i: self.free[i].nbytes))
        from .executable import aligned_empty

        self.total += nbytes
        return aligned_empty((max(nbytes, 1),), np.uint8)

    def give(self, buf: np.ndarray) -> None:
        self.free.append(buf)


def _view(raw: np.ndarray, shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    dt = np.dtype(dtype)
    return raw[:int(np.prod(shape, dtype=np.int64)) * dt.itemsize].view(dt).reshape(shape)


class StaticProgram:
    """Kernel calls over preallocated buffers; build() says None when a graph needs the general runner."""

    def __init__(self, graph: Graph, calls: list[tuple[Callable[..., Any], tuple[Any, ...], Step]],
                 staged: list[tuple[Value, np.ndarray, bool]], outputs: list[tuple[Value, np.ndarray]],
                 pool_bytes: int) -> None:
        self.graph = graph
        self.calls = calls
        self.staged = staged  # (graph input, its buffer, stored NHWC?)
        self.outputs = outputs  # (graph output, the buffer it is computed into)
        self.pool_bytes = pool_bytes  # bytes of activation buffers
        self._lock = threading.Lock()

    @classmethod
    def build(cls, graph: Graph, steps: Sequence[Step], func: Callable[[str], Any],
              placements: Mapping[Value, tuple[Value, int]] | None = None) -> StaticProgram | None:
        """The program for `steps` (already bound: weights aligned), or None when some step runs
        on NumPy, reads a computed value NCHW, or a value is neither computed, an input nor a constant.
        `placements`: value -> (concat output, channel offset) for kernels that write a window of
        an elided concat's buffer (concat_inplace.py)."""
        if not steps or any(s.func is None for s in steps):
            return None
        inputs = set(graph.inputs)
        last: dict[Value, int] = {}
        for i, s in enumerate(steps):
            for a in s.args:
                if isinstance(a, Value):
                    last[a] = i
        keep = set(graph.outputs)
        pool = _Pool()
        where: dict[tuple[Value, bool], np.ndarray] = {}  # (value, NHWC?) -> its buffer
        staged: list[tuple[Value, np.ndarray, bool]] = []
        held: dict[Value, np.ndarray] = {}  # pool buffers by value, to give back after the last reader

        def arg(v: Value, nhwc: bool) -> np.ndarray | None:
            nhwc = nhwc and is_act4(v)
            got = where.get((v, nhwc))
            if got is not None:
                return got
            if v in inputs:
                shape = nhwc_shape(v) if nhwc else tuple(int(d) for d in v.type.shape)
                from .executable import aligned_empty

                buf = where[(v, nhwc)] = aligned_empty(shape, dtypes.to_numpy(v.type.dtype))
                staged.append((v, buf, nhwc))
                return buf
            data = graph.const_data(v)
            if data is None or (v, not nhwc) in where:
                return None  # computed in the other layout: the general runner converts
            from .executable import aligned

            data = np.asarray(data, dtypes.to_numpy(v.type.dtype))
            buf = where[(v, nhwc)] = aligned(data.transpose(0, 2, 3, 1) if nhwc else data)
            return buf

        def buffer_of(v: Value) -> np.ndarray:
            shape, dt = nhwc_shape(v), dtypes.to_numpy(v.type.dtype)
            raw = held[v] = pool.take(int(np.prod(shape, dtype=np.int64)) * np.dtype(dt).itemsize)
            return _view(raw, shape, dt)

        calls: list[tuple[Callable[..., Any], tuple[Any, ...], Step]] = []
        for i, s in enumerate(steps):
            args: list[Any] = []
            for j, a in enumerate(s.args):
                if isinstance(a, Value):
                    got = arg(a, s.reads_nhwc(j))
                    if got is None:
                        return None
                    args.append(got)
                else:
                    args.append(a)
            out_v = s.output
            if out_v in (placements or {}):
                whole_v, c0 = placements[out_v]
                whole = where.get((whole_v, True))
                if whole is None:  # the first window written: the concat's buffer starts here
                    whole = where[(whole_v, True)] = buffer_of(whole_v)
                out = where[(out_v, True)] = whole[..., c0:c0 + int(out_v.type.shape[1])]
            else:
                out = where[(out_v, is_act4(out_v))] = buffer_of(out_v)
            calls.append((func(s.func), (*args, out), s))
            for a in {a for a in s.args if isinstance(a, Value)}:
                if last[a] == i and a not in keep and a in held:
                    pool.give(held.pop(a))
        outputs = []
        for v in graph.outputs:
            buf = where.get((v, is_act4(v)))
            if buf is None:
                return None
            outputs.append((v, buf))
        return cls(graph, calls, staged, outputs, pool.total)

    def run(self, bound: Mapping[Value, np.ndarray], times: list[NodeTiming] | None = None) -> dict[str, np.ndarray]:
        """`bound`: checked inputs by value (NCHW as the graph states them)."""
        with self._lock:
            for v, buf, nhwc in self.staged:
                a = bound[v]
                np.copyto(buf, a.transpose(0, 2, 3, 1) if nhwc else a)
            i = 0
            try:
                if times is None:
                    for i, (f, args, _) in enumerate(self.calls):  # noqa: B007 - i names a failing step
                        f(*args)
                else:
                    for i, (f, args, s) in enumerate(self.calls):  # noqa: B007
                        t0 = time.perf_counter()
                        f(*args)
                        times.append(s.timing(time.perf_counter() - t0, "tvm"))
            except Exception as e:  # noqa: BLE001 - a TVM runtime failure: name the node
                node = self.calls[i][2].node
                raise LpdcExecutionError(f"{type(e).__name__}: {e}", where=f"node '{node.name}' ({node.op})") from e
            return {v.name: np.array(buf.transpose(0, 3, 1, 2) if is_act4(v) else buf) for v, buf in self.outputs}
