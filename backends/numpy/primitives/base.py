"""What a primitive is: the layer geometry it sees (`ConvSpec`, `FCSpec`), its record in the
catalog (`Primitive`), and the packed-weight cache every primitive shares.

A primitive is one way to compute a layer (im2col, Winograd, FFT, ...) with a fixed input and
output layout. It declares when it applies, how much scratch memory it needs, and the arithmetic
and memory traffic the analytical cost model charges for it; `run` computes the layer without
its epilogue (bias, residual and activation are added by the kernel that dispatches to it).
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import numpy as np

from ....errors import LpdcUnsupportedError

FLOAT_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class ConvSpec:
    """Geometry of one 2-D convolution in logical NCHW terms (whatever the physical layout)."""

    n: int
    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    stride: tuple[int, int] = (1, 1)
    pad: tuple[int, int, int, int] = (0, 0, 0, 0)  # top, left, bottom, right
    dilation: tuple[int, int] = (1, 1)
    group: int = 1
    dtype: str = "float32"
    density: float = 1.0  # fraction of non-zero weights (pruned models are sparse)

    @property
    def ho(self) -> int:
        return (self.h + self.pad[0] + self.pad[2] - self.dilation[0] * (self.kh - 1) - 1) // self.stride[0] + 1

    @property
    def wo(self) -> int:
        return (self.w + self.pad[1] + self.pad[3] - self.dilation[1] * (self.kw - 1) - 1) // self.stride[1] + 1

    @property
    def hp(self) -> int:
        return self.h + self.pad[0] + self.pad[2]

    @property
    def wp(self) -> int:
        return self.w + self.pad[1] + self.pad[3]

    @property
    def cg(self) -> int:
        return self.c // self.group

    @property
    def og(self) -> int:
        return self.o // self.group

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the direct definition."""
        return self.n * self.o * self.ho * self.wo * self.cg * self.kh * self.kw

    @property
    def in_bytes(self) -> int:
        return self.n * self.c * self.h * self.w * self.itemsize

    @property
    def out_bytes(self) -> int:
        return self.n * self.o * self.ho * self.wo * self.itemsize

    @property
    def w_bytes(self) -> int:
        return self.o * self.cg * self.kh * self.kw * self.itemsize

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def is_depthwise(self) -> bool:
        return self.group == self.c and self.o % self.c == 0


@dataclass(frozen=True)
class FCSpec:
    """Geometry of a fully-connected layer: (batch, K) x (M, K)^T -> (batch, M)."""

    batch: int
    k: int
    m: int
    dtype: str = "float32"
    density: float = 1.0

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def macs(self) -> int:
        return self.batch * self.k * self.m

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES


Spec = ConvSpec | FCSpec


def _zero(spec: Spec) -> int:
    return 0


def _one(spec: Spec) -> int:
    return 1


@dataclass(frozen=True)
class Primitive:
    """One implementation of a layer in the catalog.

    applies(spec) -> bool; workspace(spec) -> scratch bytes; run(x, w, spec) -> y with x in
    `in_layout`, w in the IR's weight layout (OIHW for conv, (M, K) for fully-connected) and y in
    `out_layout`, accumulated in x's dtype, without bias/residual/activation.
    For the analytical cost model: flops(spec) is the arithmetic actually executed (Winograd
    executes fewer multiplications than the direct definition, kn2row more), traffic(spec) the
    bytes moved, calls(spec) the number of separate library calls (each costs a fixed overhead),
    and efficiency the fraction of the device's peak its inner loop reaches.
    """

    name: str
    op: str  # "conv" | "fully_connected"
    family: str
    in_layout: str
    out_layout: str
    applies: Callable[[Spec], bool]
    run: Callable[[np.ndarray, np.ndarray, Spec], np.ndarray]
    workspace: Callable[[Spec], int] = _zero
    flops: Callable[[Spec], float] = field(default=lambda s: 2.0 * s.macs)
    traffic: Callable[[Spec], float] = _zero
    calls: Callable[[Spec], int] = _one
    efficiency: float = 0.5
    exact: bool = True  # False: a fast algorithm with larger rounding error (Winograd, FFT)
    doc: str = ""

    @property
    def choice(self) -> str:
        """The name selection uses for this primitive in a plan: `name@layout`."""
        return f"{self.name}@{self.in_layout}"


PRIMITIVES: dict[str, Primitive] = {}


def register(prim: Primitive) -> Primitive:
    """Add `prim` to the catalog (names are unique)."""
    if prim.name in PRIMITIVES:
        raise ValueError(f"primitive {prim.name!r} registered twice")
    PRIMITIVES[prim.name] = prim
    return prim


def get_primitive(name: str, op: str | None = None) -> Primitive:
    """The catalog entry `name` (for `op` when given); an unknown name is LpdcUnsupportedError."""
    from . import _load

    _load()
    prim = PRIMITIVES.get(name)
    if prim is None or (op is not None and prim.op != op):
        known = sorted(p.name for p in PRIMITIVES.values() if op is None or p.op == op)
        raise LpdcUnsupportedError(f"unknown {op or 'layer'} primitive {name!r}; known: {', '.join(known)}")
    return prim


# ---- packed weights ------------------------------------------------------------------------------
# Primitives transform their weights once (Winograd's G g G^T, the FFT of the kernel, a CSR matrix)
# and reuse the result, as inference libraries do at load time. Entries are keyed by the weight
# array's identity and checked through a weak reference, so a recycled id never returns stale data.
_pack_limit = 512 << 20
_packed: OrderedDict[tuple[int, Hashable], tuple[weakref.ref, object, int]] = OrderedDict()
_packed_bytes = 0


def packed(w: np.ndarray, key: Hashable, make: Callable[[], object]) -> object:
    """`make()` for weight array `w` and variant `key`, computed once and cached (LRU by bytes)."""
    global _packed_bytes
    k = (id(w), key)
    hit = _packed.get(k)
    if hit is not None and hit[0]() is w:
        _packed.move_to_end(k)
        return hit[1]
    value = make()
    size = _nbytes(value)
    if size > _pack_limit // 4:  # too big to keep: the caller pays the transform every run
        return value
    try:
        ref = weakref.ref(w)
    except TypeError:  # a view of a non-weakref-able object: do not cache
        return value
    if hit is not None:
        _packed_bytes -= _packed.pop(k)[2]
    _packed[k] = (ref, value, size)
    _packed_bytes += size
    while _packed_bytes > _pack_limit and _packed:
        _packed_bytes -= _packed.popitem(last=False)[1][2]
    return value


def _nbytes(value: object) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if hasattr(value, "data") and hasattr(value, "indices"):  # scipy sparse
        return int(value.data.nbytes + value.indices.nbytes + value.indptr.nbytes)
    if isinstance(value, tuple):
        return sum(_nbytes(v) for v in value)
    return 64


def set_pack_limit(nbytes: int) -> int:
    """Bound the packed-weight cache to `nbytes` (default 512 MiB); returns the previous bound.
    Running many plans of one model side by side needs room for all their packed weights."""
    global _pack_limit
    old, _pack_limit = _pack_limit, int(nbytes)
    return old


def packed_bytes() -> int:
    """Bytes currently held by the packed-weight cache."""
    return _packed_bytes


def clear_packed() -> None:
    """Drop every cached packed weight (tests and benchmarks that need a cold start)."""
    global _packed_bytes
    _packed.clear()
    _packed_bytes = 0


def numel(*dims: int) -> int:
    return math.prod(dims)
