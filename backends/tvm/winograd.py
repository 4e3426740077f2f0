"""Winograd F(m x m, 3x3) conv for the TVM CPU backend (3x3, stride 1, dilation 1, group 1; NHWC).

Why: a 3x3 direct conv spends 9 multiplies per output and channel pair; F(2x2,3x3) spends 16/4 = 4,
F(4x4,3x3) 36/16 = 2.25, and the multiplies become one batched GEMM per transform point, which
runs near the machine's GEMM peak. Stages (all TE, one PrimFunc):

    pad   xp[n, Hp, Wp, C]       zero border + room for partial last tiles (Hp = TH*m + 2; inlined)
    V     V[a, b, P, C]          B^T d B for every (m+2)^2 input tile d; P = N*TH*TW tiles (padded to Pp)
    M     M[a, b, Pp, Kp]        sum_C V[a, b, p, c] * U[a, b, k // kb, c, k % kb]   (the GEMM)
    out   out[n, oh, ow, K]      act(A^T M A + bias + residual); partial last tiles are cut

U = G g G^T is computed once in NumPy (`transform_weight`). Each transform is two 1-D passes (the
first into a per-tile "local" buffer) written out term by term (zero coefficients skipped, +-1 as
add / subtract) under a Select on the point index; the schedule unrolls the point loops, so the
Selects fold to one branch each and the local buffer becomes registers.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction as Fr
from typing import Any

import numpy as np
import tvm
from tvm import te

from ...errors import LpdcUnsupportedError
from ...ir import Graph, Node
from . import compute as C
from .lower import Lowered, _epi_key, _epilogue, _f32, conv_shape, is_act4

_H = Fr(1, 2)
# F(m, 3) matrices (A^T, B^T, G). F(2,3) is Lavin's; F(4,3) uses the points 0, -1, 1, 1/2, -2
# (Barabasz et al., arXiv:1803.10986; TVM's topi picks the same), more accurate than 0, +-1, +-2.
MATRICES: dict[int, tuple[list[list[Fr]], list[list[Fr]], list[list[Fr]]]] = {
    2: ([[1, 1, 1, 0], [0, -1, 1, 1]],
        [[1, 0, -1, 0], [0, -1, 1, 0], [0, 1, 1, 0], [0, -1, 0, 1]],
        [[1, 0, 0], [_H, -_H, _H], [_H, _H, _H], [0, 0, 1]]),
    4: ([[1, 1, 1, 1, 1, 0], [0, -1, 1, _H, -2, 0], [0, 1, 1, Fr(1, 4), 4, 0], [0, -1, 1, Fr(1, 8), -8, 1]],
        [[1, -Fr(3, 2), -2, Fr(3, 2), 1, 0], [0, 1, -Fr(5, 2), _H, 1, 0], [0, -1, _H, Fr(5, 2), 1, 0],
         [0, -2, -1, 2, 1, 0], [0, _H, -1, -_H, 1, 0], [0, 1, -Fr(3, 2), -2, Fr(3, 2), 1]],
        [[1, 0, 0], [-Fr(1, 3), Fr(1, 3), -Fr(1, 3)], [Fr(1, 3), Fr(1, 3), Fr(1, 3)],
         [-Fr(16, 15), -Fr(8, 15), -Fr(4, 15)], [Fr(1, 15), -Fr(2, 15), Fr(4, 15)], [0, 0, 1]]),
}


@dataclass(frozen=True)
class WinogradTiles:
    """The GEMM's register tile: `pt` tiles (rows) x `kb` output channels (kb / vec vectors)."""

    vec: int
    pt: int
    kb: int
    pp: int  # rows computed: P rounded up to pt (the extra rows are discarded)
    kp: int  # channels computed: K rounded up to kb (zero weights)


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def tile_counts(s: C.ConvShape, m: int) -> tuple[int, int, int]:
    """(TH, TW, P): output tiles per column and row, and tiles in all (batch included)."""
    th, tw = -(-s.oh // m), -(-s.ow // m)
    return th, tw, s.n * th * tw


def default_tiles(s: C.ConvShape, m: int, vec: int, registers: int = 32) -> WinogradTiles:
    """The register tile with the most useful FMAs per accumulator (cf. x86_conv.default_conv_knobs).

    Accumulators pt x nv stay within registers - 8 (the rest hold U vectors and broadcasts); work
    on padded rows / channels counts against a tile by its squared useful fraction. Measured on
    AVX-512 (Zen 5): 16 to 24 accumulators all run alike, while padding P or K costs its share.
    """
    p = tile_counts(s, m)[2]
    budget = max(4, registers - 8)
    best: tuple[float, WinogradTiles] | None = None
    for nv in (1, 2, 3, 4):
        kb = vec * nv
        kp = _round_up(s.k, kb)
        for pt in range(1, min(p, budget // nv) + 1):
            pp = _round_up(p, pt)
            useful = (s.k * p) / (kp * pp)
            score = useful ** 2 * min(pt * nv, 16) * (1.0 + 0.02 * nv)  # more vectors: more V reuse
            if best is None or score > best[0]:
                best = (score, WinogradTiles(vec, pt, kb, pp, kp))
    assert best is not None
    return best[1]


def _lin(coefs: list[Fr], terms: list[Any]) -> Any:
    """sum(coef * term) without the zero terms; +-1 become add / subtract."""
    out = None
    # a positive term first, so that no negation is needed (every row here has one)
    for c, t in sorted(((c, t) for c, t in zip(coefs, terms, strict=True) if c != 0), key=lambda ct: ct[0] < 0):
        if abs(c) != 1:
            t = t * tvm.tirx.const(float(abs(c)), "float32")
        if out is None:
            out = t if c > 0 else -t
        else:
            out = out + t if c > 0 else out - t
    assert out is not None
    return out


def _by_index(var: Any, count: int, leaf: Any) -> Any:
    """Select(var == 0, leaf(0), Select(var == 1, ...)): one constant branch once var is unrolled."""
    expr = leaf(count - 1)
    for v in range(count - 2, -1, -1):
        expr = tvm.tirx.Select(var == v, leaf(v), expr)
    return expr


def _pad(x: Any, s: C.ConvShape, hp: int, wp: int) -> Any:
    """Zero border and the room partial last tiles read (the schedule inlines it into the row pass)."""
    pt, pl = s.pad[0], s.pad[1]
    if (pt, pl) == (0, 0) and (hp, wp) == (s.h, s.w):
        return x
    return te.compute(
        (s.n, hp, wp, s.c),
        lambda n, i, j, c: tvm.tirx.if_then_else(
            tvm.tirx.all(i >= pt, i < s.h + pt, j >= pl, j < s.w + pl), x[n, i - pt, j - pl, c],
            tvm.tirx.const(0.0, x.dtype)),
        name="pad")


def winograd_nhwc(s: C.ConvShape, epi: dict[str, Any], m: int, vec: int,
                  tiles: WinogradTiles | None = None) -> list[Any]:
    """[x, U, *epilogue args, out] for compute._epilogue's flags `epi` (U: transform_weight's layout)."""
    _check_shape(s, m)
    t = tiles or default_tiles(s, m, vec)
    x = te.placeholder((s.n, s.h, s.w, s.c), name="x")
    u = te.placeholder((m + 2, m + 2, t.kp // t.kb, s.c, t.kb), name="U")
    args, out = output_transform(gemm(input_transform(x, s, m, t), u, t), s, m, epi)
    return [x, u, *args, out]


def input_transform(x: Any, s: C.ConvShape, m: int, t: WinogradTiles) -> Any:
    """V[a, b, p, c] = (B^T d B)[a, b] for the tile p of channel c (rows past P repeat the last tile).

    Two passes, B^T d (stage "VT", computed per tile in registers) then (.) B: 2 (m+2)^3 terms, not (m+2)^4.
    """
    bt, r = MATRICES[m][1], m + 2
    th, tw, p_all = tile_counts(s, m)
    xp = _pad(x, s, th * m + 2, tw * m + 2)

    def rows(a: Any, j: Any, p: Any, c: Any) -> Any:
        q = p if t.pp == p_all else te.min(p, p_all - 1)
        n, ti, tj = q // (th * tw), q // tw % th, q % tw
        return _by_index(a, r, lambda e: _lin(bt[e], [xp[n, ti * m + i, tj * m + j, c] for i in range(r)]))

    vt = te.compute((r, r, t.pp, s.c), rows, name="VT")
    return te.compute((r, r, t.pp, s.c),
                      lambda a, b, p, c: _by_index(b, r, lambda e: _lin(bt[e], [vt[a, j, p, c] for j in range(r)])),
                      name="V")


def gemm(v: Any, u: Any, t: WinogradTiles) -> Any:
    """M[a, b, p, k] = sum_c V[a, b, p, c] * U[a, b, k // kb, c, k % kb]: one GEMM per point."""
    r, c = int(v.shape[0]), int(v.shape[3])
    rc = te.reduce_axis((0, c), "rc")
    return te.compute((r, r, t.pp, t.kp),
                      lambda a, b, p, k: te.sum(v[a, b, p, rc] * u[a, b, k // t.kb, rc, k % t.kb], axis=rc), name="M")


def output_transform(mm: Any, s: C.ConvShape, m: int, epi: dict[str, Any]) -> tuple[list[Any], Any]:
    """out[n, i, j, k] = act((A^T M A)[i % m, j % m] of tile (i // m, j // m) + bias + residual).

    Two passes: A^T M (stage "YT", per tile in registers), then (.) A inside the epilogue.
    """
    at, r = MATRICES[m][0], m + 2
    th, tw, _ = tile_counts(s, m)
    yt = te.compute((m, r, int(mm.shape[2]), int(mm.shape[3])),
                    lambda o, b, p, k: _by_index(o, m, lambda e: _lin(at[e], [mm[a, b, p, k] for a in range(r)])),
                    name="YT")

    def cols(n: Any, i: Any, j: Any, k: Any) -> Any:
        p = n * (th * tw) + i // m * tw + j // m
        return _by_index(j % m, m, lambda e: _lin(at[e], [yt[i % m, b, p, k] for b in range(r)]))

    y = te.compute((s.n, s.oh, s.ow, s.k), cols, name="Y")
    return C._epilogue(y, s.k, epi, (s.n, s.oh, s.ow, s.k))


def transform_weight(w: np.ndarray, m: int, kb: int | None = None) -> np.ndarray:
    """OIHW 3x3 -> U = G g G^T as [m+2, m+2, Kp/kb, C, kb] float32 (float64 math; zero rows to Kp).

    kb (default K) is the GEMM's output-channel tile, so a tile's weights for one input channel
    are `kb` contiguous floats; K is padded with zero filters to a multiple of kb.
    """
    k, c = w.shape[:2]
    kb = kb or k
    g = np.array(MATRICES[m][2], dtype=np.float64)
    uu = np.einsum("ai,koij,bj->abok", g, w.astype(np.float64), g)  # [r, r, C, K]
    kp = _round_up(k, kb)
    uu = np.concatenate([uu, np.zeros((*uu.shape[:3], kp - k))], axis=3) if kp > k else uu
    r = m + 2
    return np.ascontiguousarray(uu.reshape(r, r, c, kp // kb, kb).transpose(0, 1, 3, 2, 4)).astype(np.float32)


def _check_shape(s: C.ConvShape, m: int) -> None:
    if m not in MATRICES:
        raise LpdcUnsupportedError(f"Winograd F({m}x{m},3x3) is not implemented (m = 2 or 4)")
    if (s.kh, s.kw, s.stride, s.dilation, s.group) != (3, 3, (1, 1), (1, 1), 1):
        raise LpdcUnsupportedError("Winograd covers 3x3 convs with stride 1, dilation 1 and group 1 only")


def schedule_winograd(sch: Any, s: C.ConvShape, m: int, vec: int, tiles: WinogradTiles | None = None) -> None:
    """Schedule winograd_nhwc's blocks (pad, V, M, out) in place; both cores on every stage.

    The pad stage is inlined into the row pass (bounds tests on its loads): measured 20-35% faster
    for the input transform than a separate padded copy (F(2x2) and F(4x4), 56x56x64 and 28x28x128).
    """
    t = tiles or default_tiles(s, m, vec)
    if any(sch.get(b).name_hint == "pad" for b in sch.get_child_blocks(sch.get_sblock("root"))):
        sch.compute_inline(sch.get_sblock("pad"))
    _schedule_input_transform(sch, s, m, vec)
    _schedule_gemm(sch, t)
    _schedule_output_transform(sch, s, m, vec)


def _lanes(n: int, vec: int) -> int:
    """The widest vector (<= vec lanes) that divides n."""
    return max(d for d in range(1, vec + 1) if n % d == 0)


def _schedule_input_transform(sch: Any, s: C.ConvShape, m: int, vec: int) -> None:
    """Per tile and channel vector: the row pass into registers, then the column pass, all unrolled."""
    blk = sch.get_sblock("V")
    a, b, p, c = sch.get_loops(blk)
    co, cv = sch.split(c, [None, _lanes(s.c, vec)])
    sch.reorder(p, co, a, b, cv)
    sch.parallel(p)
    _registers(sch, sch.get_sblock("VT"), co, (m + 2, m + 2, _lanes(s.c, vec)))
    sch.unroll(a)
    sch.unroll(b)
    sch.vectorize(cv)


def _registers(sch: Any, blk: Any, loop: Any, extents: tuple[int, int, int]) -> None:
    """Compute a transform's first pass under `loop` into a local buffer, unrolled, vectorised."""
    from .schedules.x86_conv import _tile_loops

    sch.compute_at(blk, loop)
    sch.set_scope(blk, 0, "local")
    lp = _tile_loops(sch, blk, dict(zip("ijv", extents, strict=True)))  # compute_at drops unit loops
    for name in "ij":
        if lp[name] is not None:
            sch.unroll(lp[name])
    if lp["v"] is not None:
        sch.vectorize(lp["v"])


def _schedule_gemm(sch: Any, t: WinogradTiles) -> None:
    """Register tile pt rows x kb channels in "local" accumulators, C reduced around it."""
    blk = sch.get_sblock("M")
    a, b, p, k, rc = sch.get_loops(blk)
    po, pi = sch.split(p, [None, t.pt])
    ko, kvo, kv = sch.split(k, [None, t.kb // t.vec, t.vec])
    sch.reorder(a, b, ko, po, rc, pi, kvo, kv)
    outer = sch.fuse(a, b, ko, po)
    sch.parallel(outer)
    cache = sch.cache_write(blk, 0, "local")
    sch.reverse_compute_at(cache, outer)
    sch.unroll(pi)
    sch.unroll(kvo)
    sch.vectorize(kv)
    sch.decompose_reduction(blk, rc)
    *_, row, col = sch.get_loops(cache)
    co, cv = sch.split(col, [None, t.vec])
    for lp in (row, co):  # constant indices: the accumulators stay in registers (no stack copy)
        sch.unroll(lp)
    sch.vectorize(cv)


def _schedule_output_transform(sch: Any, s: C.ConvShape, m: int, vec: int) -> None:
    """Per tile and channel vector: the row pass into registers, then its m x m outputs (+ epilogue)."""
    sch.compute_inline(sch.get_sblock("Y"))
    out = sch.get_sblock("out")
    n, i, j, k = sch.get_loops(out)
    ti, mi = sch.split(i, [None, m])
    tj, mj = sch.split(j, [None, m])
    ko, kv = sch.split(k, [None, _lanes(s.k, vec)])
    sch.reorder(n, ti, tj, ko, mi, mj, kv)
    sch.parallel(sch.fuse(n, ti, tj))
    _registers(sch, sch.get_sblock("YT"), ko, (m, m + 2, _lanes(s.k, vec)))
    sch.unroll(mi)
    sch.unroll(mj)
    sch.vectorize(kv)


def default_winograd_m(s: C.ConvShape, vec: int) -> int | None:
    """F(m) an untuned build uses for conv `s`, or None (direct). Measured on Zen 5 AVX-512 (both
    cores, ResNet-18's 3x3 layers): F(4x4) 2.3-3.0x faster than direct at 14x14 and larger, F(2x2)
    1.25x at 7x7 (where F(4x4) loses: 4 tiles share 38 MB of transformed weights). Only where that
    was measured (16 fp32 lanes) and where the GEMM has channels to work with; elsewhere direct,
    and `variants="measure"` decides by timing."""
    try:
        _check_shape(s, 2)
    except LpdcUnsupportedError:
        return None
    if vec != 16 or s.c < 16 or s.k < 16:
        return None
    return 4 if min(s.oh, s.ow) >= 14 else 2


def lower_winograd(node: Node, g: Graph, vec: int, m: int) -> Lowered:
    """The Winograd F(m x m, 3x3) kernel for a conv node, or LpdcUnsupportedError."""
    _f32(node)
    if node.op != "conv":
        raise LpdcUnsupportedError(f"Winograd lowers conv nodes, not '{node.op}'")
    x, wv = node.inputs[0], node.inputs[1]
    if not (is_act4(x) and is_act4(node.output)):
        raise LpdcUnsupportedError("Winograd conv needs NCHW 4-D activations")
    w = g.const_data(wv)
    if w is None or w.ndim != 4:
        raise LpdcUnsupportedError("Winograd conv needs constant OIHW weights")
    s = conv_shape(node, w)
    _check_shape(s, m)
    epi, extra = _epilogue(node, g, s.k)
    t = default_tiles(s, m, vec)
    tensors = winograd_nhwc(s, epi, m, vec, t)
    return Lowered(tensors, [x, transform_weight(w, m, t.kb), *extra], "winograd",
                   ("winograd", s, m, t, _epi_key(epi)), {"shape": s, "m": m, "vec": vec, "tiles": t})
