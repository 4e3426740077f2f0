"""Direct sparse convolution (group 1) for pruned, constant weights on NHWC activations.

Layout: ELL per output channel. Every output channel o keeps its non-zero weights as (value,
offset) pairs padded with (0.0, 0) to L = the longest row, packed [K, L]; an offset is the
precomputed position of the input element (c, kh, kw) relative to an output row's first input
element, so the inner loop does one index load per non-zero and no (kh, kw, c) decoding.

Vectorised along the output width, not across output channels as sparse_fc.py does: sliced
across channels, each lane of a non-zero slot needs a different input element, i.e. a gather
(16 scalar loads), and that kernel ran 5.6x *slower* than the dense conv at 90% sparsity
(ResNet-18 3x3, 64ch at 56x56, Zen 5 AVX-512). Along the width, one weight multiplies
`lanes` neighbouring output pixels whose inputs are contiguous once the pad stage has stored the
input channel-major and split by column phase (`col = q * stride + phase`, so strided convs read
contiguous vectors too): per non-zero, one broadcast weight, one offset, and `tj x ti` plain
vector loads + FMAs into register accumulators (tj vectors of a row, ti rows). The price is the
pad stage's transpose (one pass over the input) and an epilogue that reads the [K, OW] tile of a
row transposed back to NHWC; both are O(activations), paid even at 100% sparsity.
Against the dense TVM conv (bench/bench_sparse.py --quick, Zen 5, 1 thread, magnitude pruning):
ResNet-18 3x3 0.88x at 75% and 2.7x at 95%, MobileNet 1x1 (512ch, 14x14) 1.0x at 75% and 3.1x at
95%; 0.5x at 50% (prototype). Hence no density threshold: compile_tvm(sparse="measure") decides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import tvm
from tvm import s_tir, te

from . import compute as C
from .compute import ConvShape

# Register accumulators per tile (ti rows x tj vectors): the weight broadcast and offset load are
# shared by all of them; 8 leaves room for the loads on AVX-512 and NEON alike.
ACCUMULATORS = 8
MIN_TASKS = 4  # parallel tasks wanted (row tiles x channel groups)


@dataclass(frozen=True)
class SparseConvGeometry:
    """Tile and padded extents of one sparse conv (all static: the weights are constants)."""

    lanes: int  # output pixels per vector
    tj: int  # vectors per tile along the output width
    ti: int  # output rows per tile
    owp: int  # output columns computed (OW rounded up to lanes * tj)
    ohp: int  # output rows computed (OH rounded up to ti)
    hp: int  # rows of the padded input plane
    wq: int  # columns of one column-phase plane of the padded input
    og: int  # output-channel groups: parallel tasks = row tiles x og


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def geometry(s: ConvShape, vec: int) -> SparseConvGeometry:
    """Fewest vector FMAs per row (the narrowest vectors that need no more), then as many rows
    as fill the tile: a 16-lane FMA over 12 pixels costs what a 4-lane one does."""
    widths = [v for v in (vec, vec // 2, 4) if v >= 4] or [4]
    lanes = min(widths, key=lambda v: (-(-s.ow // v), v))
    tj = min(-(-s.ow // lanes), max(1, ACCUMULATORS // 2))
    cap = max(1, ACCUMULATORS // tj)
    ti = max(range(1, min(cap, s.oh) + 1), key=lambda t: (t * s.oh / _round_up(s.oh, t), -_round_up(s.oh, t)))
    owp, ohp = _round_up(s.ow, lanes * tj), _round_up(s.oh, ti)
    (sh, sw), (dh, dw) = s.stride, s.dilation
    pt, pl, pb, pr = s.pad
    hp = max(s.h + pt + pb, (ohp - 1) * sh + (s.kh - 1) * dh + 1)
    wq = max(-(-(s.w + pl + pr) // sw), owp + (s.kw - 1) * dw // sw)
    tiles = s.n * ohp // ti  # too few row tiles to keep the cores busy: split the channels too
    fits = [g for g in (1, 2, 4, 8) if s.k % g == 0]
    og = next((g for g in fits if tiles * g >= MIN_TASKS), fits[-1])
    return SparseConvGeometry(lanes, tj, ti, owp, ohp, hp, wq, og)


def effective_density(w: np.ndarray) -> float:
    """Padded ELL slots over dense weights (OIHW): what the sparse kernel actually multiplies."""
    k = w.shape[0]
    per = int(np.prod(w.shape[1:]))
    return float((w.reshape(k, -1) != 0).sum(axis=1).max()) / per if k and per else 1.0


def ell_pack(w: np.ndarray, s: ConvShape, geo: SparseConvGeometry) -> tuple[np.ndarray, np.ndarray]:
    """OIHW -> (values f32, offsets int32), both [K, L]; padding slots are (0.0, 0).

    Offset of input (c, kh, kw) in the pad stage's flat [C, stride_w, HP, WQ] plane, relative to
    output row i's base i * stride_h * WQ + j: row kh * dh, phase (kw * dw) % sw, column shift
    (kw * dw) // sw.
    """
    k = w.shape[0]
    (_, sw), (dh, dw) = s.stride, s.dilation
    cc, rr, qq = np.meshgrid(np.arange(s.c), np.arange(s.kh), np.arange(s.kw), indexing="ij")
    dx = qq * dw
    offset = (((cc * sw + dx % sw) * geo.hp + rr * dh) * geo.wq + dx // sw).reshape(-1)
    wf = w.reshape(k, -1)
    nz = wf != 0
    counts = nz.sum(axis=1)
    length = max(int(counts.max()) if k else 0, 1)
    vals = np.zeros((k, length), np.float32)
    offs = np.zeros((k, length), np.int32)
    rows, cols = np.nonzero(nz)
    slot = np.arange(rows.size) - np.repeat(np.cumsum(counts) - counts, counts)
    vals[rows, slot] = wf[rows, cols]
    offs[rows, slot] = offset[cols]
    return vals, offs


def sparse_conv_nhwc(s: ConvShape, geo: SparseConvGeometry, length: int,
                     epi: dict[str, Any]) -> tuple[list[Any], Any]:
    """Args x (NHWC), vals, offs [K, L], epilogue; output NHWC. Stages pad -> conv -> out."""
    (sh, sw) = s.stride
    pt, pl = s.pad[0], s.pad[1]
    plane = s.c * sw * geo.hp * geo.wq
    x = te.placeholder((s.n, s.h, s.w, s.c), name="x")

    def pad(b: Any, p: Any) -> Any:  # p = ((c * sw + phase) * HP + row) * WQ + q (the schedule splits p)
        q, row = p % geo.wq, p // geo.wq % geo.hp
        phase, c = p // (geo.wq * geo.hp) % sw, p // (geo.wq * geo.hp * sw)
        i, j = row - pt, q * sw + phase - pl
        return tvm.tirx.if_then_else(tvm.tirx.all(i >= 0, i < s.h, j >= 0, j < s.w), x[b, i, j, c],
                                     tvm.tirx.const(0.0, "float32"))

    xt = te.compute((s.n, plane), pad, name="pad")
    vals = te.placeholder((s.k, length), name="vals")
    offs = te.placeholder((s.k, length), dtype="int32", name="offs")
    r = te.reduce_axis((0, length), "r")
    conv = te.compute((s.n, geo.ohp, s.k, geo.owp),
                      lambda b, i, o, j: te.sum(vals[o, r] * xt[b, i * sh * geo.wq + j + offs[o, r]], axis=r),
                      name="conv")
    args, out = C._epilogue(lambda b, i, j, o: conv[b, i, o, j], s.k, epi, (s.n, s.oh, s.ow, s.k))
    return [x, vals, offs, *args, out], out


def schedule_sparse_conv(sch: s_tir.Schedule, s: ConvShape, geo: SparseConvGeometry, vec: int) -> None:
    """Parallel over row tiles (x channel groups); per (tile, output channel) the ti x tj
    accumulators live in registers while the L slots run; the tile's epilogue follows in the same task."""
    from .schedules.x86_conv import _vectorize_tail

    conv, out = sch.get_sblock("conv"), sch.get_sblock("out")
    b, i, o, j, r = sch.get_loops(conv)
    io, ii = sch.split(i, [None, geo.ti])
    oo, oi = sch.split(o, [geo.og, None])
    jo, jt, jv = sch.split(j, [None, geo.tj, geo.lanes])
    sch.reorder(b, io, oo, oi, jo, r, ii, jt, jv)
    tasks = sch.fuse(b, io, oo)
    sch.parallel(tasks)
    cache = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(cache, jo)
    sch.reverse_compute_at(out, tasks)
    sch.unroll(ii)
    sch.unroll(jt)
    sch.vectorize(jv)
    sch.decompose_reduction(conv, r)  # after vectorize (cookbook)
    _vectorize_tail(sch, out, sch.get_loops(out)[-1], vec)
    # The transpose: 16 input channels at a time, so each read is one cache line of x and the
    # writes are 16 sequential streams (measured 20% faster than channel-outermost).
    pb, p = sch.get_loops(sch.get_sblock("pad"))
    c, phase, row, q = sch.split(p, [s.c, s.stride[1], geo.hp, geo.wq])
    cb = max(d for d in range(1, 17) if s.c % d == 0)
    co, ci = sch.split(c, [None, cb])
    sch.reorder(pb, co, row, q, phase, ci)
    sch.parallel(sch.fuse(pb, co, row))
    sch.unroll(ci)
