"""CPU schedules for the NHWC conv, depthwise conv and fully-connected computes (compute.py).

Direct conv (3x3, 1x1-as-GEMM, strided, grouped) uses a register tile of `ow_tile` output
pixels x `oc_tile` output channels (oc_tile = oc_vecs vectors of `vec` lanes): the conv block is
computed at the tile under the epilogue's loop nest, its accumulator lives in registers (scope
"local", fully unrolled), the reduction runs rh, rw, rc around it, and each weight vector load
feeds ow_tile FMAs. The same template serves AVX-512 (vec 16) and NEON (vec 4): only the knobs
change. Knobs have defaults chosen from the shape, so an untuned build is already fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir

from ..compute import ConvShape


@dataclass(frozen=True)
class ConvKnobs:
    """Tunable parameters of the direct-conv template."""

    vec: int  # vector lanes (16 for AVX-512 fp32, 4 for NEON)
    oc_tile: int  # output channels per register tile (a multiple of vec); weight pack width
    ow_tile: int  # output pixels per register tile along W
    kp: int  # output channels computed (K rounded up to oc_tile; the extra are discarded)
    owp: int  # output columns computed (OW rounded up to ow_tile)
    unroll_kw: bool = True
    # Loop order: True = rows outermost (each output row is finished, all channel tiles, before the
    # next: its input rows stay in cache); False = channel tiles outermost (each tile's weights
    # stay in cache over all rows). See rows_outer_default.
    rows_outer: bool = False


# Weights up to this size stay cached while a row visits every channel tile (2 MiB L2 per core here).
ROWS_OUTER_MAX_WEIGHT_BYTES = 5 << 19


def rows_outer_default(s: ConvShape, kp: int) -> bool:
    """Rows outermost unless the weights outgrow the cache or too few rows split among threads.

    Measured on AVX-512 (2 cores): 1x1 16->96 at 112x112 0.193 -> 0.112 ms, 3x3/2 64->128 at 56x56
    0.345 -> 0.244, 1x1 1024->256 at 14x14 0.300 -> 0.235 with rows outermost; 1x1 512->2048 at 7x7
    (4 MiB of weights) 0.210 -> 0.241 and 3x3 512->512 at 7x7 (9 MiB) 0.501 -> 0.560 slower.
    """
    weight_bytes = 4 * kp * s.kh * s.kw * (s.c // s.group)
    return weight_bytes <= ROWS_OUTER_MAX_WEIGHT_BYTES and s.n * s.oh >= 14


def divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def default_conv_knobs(s: ConvShape, vec: int, registers: int = 32, exact: bool = False) -> ConvKnobs:
    """Pick the register tile with the most useful FMAs per accumulator register.

    Candidates: ow_tile x oc_vectors accumulators within `registers` - 8 (the rest hold the
    weight vectors and the broadcast input); padding K or OW up to the tile costs its waste.
    Grouped convs keep tiles inside a group (oc_tile divides K/group, no K padding).
    """
    return ranked_conv_knobs(s, vec, registers, exact)[0]


def ranked_conv_knobs(s: ConvShape, vec: int, registers: int = 32, exact: bool = False) -> list[ConvKnobs]:
    """Every register tile default_conv_knobs considers, best score first (the tuner's candidates)."""
    kg = s.k // s.group
    budget = max(4, registers - 8)
    grouped = s.group > 1
    lanes = max(d for d in divisors(kg) if d <= vec) if grouped else vec
    scored: list[tuple[float, int, ConvKnobs]] = []
    for nv in (1, 2, 3, 4):
        oc = lanes * nv
        if grouped and kg % oc:
            continue
        kp = s.k if grouped else _round_up(s.k, oc)
        if exact and kp != s.k:
            continue
        for owt in range(1, min(s.ow, budget // nv) + 1):
            owp = _round_up(s.ow, owt)
            if exact and owp != s.ow:
                continue
            useful = (s.k * s.ow) / (kp * owp)
            # Measured on AVX-512: beyond ~16 accumulators the gain is small, and padded work costs
            # more than its share (predicated epilogue), hence the cap and the squared useful fraction.
            score = useful ** 2 * min(owt * nv, 16) * (1.0 + 0.02 * nv)  # more vectors: more x reuse
            knobs = ConvKnobs(lanes, oc, owt, kp, owp, rows_outer=rows_outer_default(s, kp))
            scored.append((-score, len(scored), knobs))
    assert scored
    return [k for _, _, k in sorted(scored)]


def check_knobs(s: ConvShape, kn: ConvKnobs, where: str = "") -> ConvKnobs:
    """Validate user knobs for a conv (a bad tile would compute wrong or out-of-bounds data)."""
    from ....errors import LpdcError

    kg = s.k // s.group
    ok = (kn.vec >= 1 and kn.oc_tile % kn.vec == 0 and kn.kp % kn.oc_tile == 0 and kn.kp >= s.k
          and kn.owp % kn.ow_tile == 0 and kn.owp >= s.ow and (s.group == 1 or (kn.kp == s.k and kg % kn.oc_tile == 0)))
    if not ok:
        raise LpdcError(f"invalid conv knobs {kn} for K={s.k} OW={s.ow} group={s.group}", where=where)
    return kn


def schedule_conv(sch: s_tir.Schedule, s: ConvShape, kn: ConvKnobs) -> None:
    """Schedule compute.conv_nhwc's blocks (pad, conv, out) in place.

    The conv block (padded Kp x OWp domain, so every tile is whole) is the anchor: its tile's
    accumulators go to a "local" cache, and the epilogue is moved under the tile loop, reading
    the cache directly; only the epilogue sees the boundary predicate of a padded tile.
    """
    conv = sch.get_sblock("conv")
    kv, rh = register_tile(sch, kn, kn.vec, kn.unroll_kw and s.kw <= 3)
    sch.vectorize(kv)
    sch.decompose_reduction(conv, rh)
    out = sch.get_sblock("out")
    _vectorize_tail(sch, out, sch.get_loops(out)[-1], kn.vec)
    _schedule_pad(sch, kn.vec)


def register_tile(sch: s_tir.Schedule, kn: ConvKnobs, lanes: int, unroll_rw: bool) -> tuple[object, object]:
    """The direct-conv register tile on the "conv" block (loops n, i, j, k, rh, rw, rc, then any
    inner reduction): ow_tile x (oc_tile / lanes) accumulators in a "local" cache under the tile
    loop, the epilogue "out" moved there too. Returns (the `lanes`-wide channel loop, rh) for the
    caller to vectorise or tensorize and to split the reduction's init off at."""
    conv = sch.get_sblock("conv")
    n, i, j, k, rh, rw, rc, *inner = sch.get_loops(conv)
    jo, ji = sch.split(j, [None, kn.ow_tile])
    ko, kio, kv = sch.split(k, [None, kn.oc_tile // lanes, lanes])
    if kn.rows_outer:
        sch.reorder(n, i, ko, jo, rh, rw, rc, ji, kio, kv, *inner)
        sch.parallel(sch.fuse(n, i))
    else:
        sch.reorder(n, ko, i, jo, rh, rw, rc, ji, kio, kv, *inner)
        sch.parallel(sch.fuse(n, ko, i))
    cache = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(cache, jo)
    sch.reverse_compute_at(sch.get_sblock("out"), jo)
    sch.compute_inline(cache)
    sch.unroll(ji)
    sch.unroll(kio)
    if unroll_rw:
        sch.unroll(rw)
    return kv, rh


def depthwise_ow_tile(s: ConvShape) -> int:
    """Output columns per depthwise register tile: 8, or the width when narrower."""
    return min(8, s.ow)


def schedule_depthwise(sch: s_tir.Schedule, s: ConvShape, vec: int) -> None:
    """Depthwise: vectorise channels, a tile of output pixels in registers, parallel over rows.

    Same anchor-on-conv structure as schedule_conv (conv computes whole tiles of the padded
    width; the epilogue runs under the tile loop reading the register cache).
    """
    conv = sch.get_sblock("conv")
    n, i, j, c, _, _ = sch.get_loops(conv)
    sch.parallel(sch.fuse(n, i))
    _depthwise_tile(sch, "", j, c, depthwise_ow_tile(s), max(d for d in divisors(s.c) if d <= vec), vec)


def schedule_depthwise_pointwise(sch: s_tir.Schedule, sd: ConvShape, sp: ConvShape, kn: ConvKnobs,
                                 vec: int) -> None:
    """compute.depthwise_pointwise_nhwc: the 1x1 conv scheduled as alone (rows outermost, so
    `kn.rows_outer` must hold), and the depthwise row it reads computed under that row loop
    into a row buffer that stays in L1/L2 instead of a whole activation going out and back."""
    schedule_conv(sch, sp, kn)
    row = sch.get_loops(sch.get_sblock("out"))[0]
    sch.compute_at(sch.get_sblock("dw_out"), row)
    conv = sch.get_sblock("dw_conv")
    sch.compute_at(conv, row)
    j, c = sch.get_loops(conv)[-4:-2]
    width = int(sch.get(j).extent)
    _depthwise_tile(sch, "dw_", j, c, max(d for d in divisors(width) if d <= 8),
                    max(d for d in divisors(sd.c) if d <= vec), vec)


def _depthwise_tile(sch: s_tir.Schedule, prefix: str, j: object, c: object, ow_tile: int, lanes: int,
                    vec: int) -> None:
    """The depthwise register tile on the `prefix`conv block (loops ..., j, c, rh, rw): ow_tile
    pixels x `lanes` channels of accumulators, the epilogue under the tile reading them."""
    conv, out = sch.get_sblock(f"{prefix}conv"), sch.get_sblock(f"{prefix}out")
    rh, rw = sch.get_loops(conv)[-2:]
    jo, ji = sch.split(j, [None, ow_tile])
    co, ci = sch.split(c, [None, lanes])
    sch.reorder(jo, co, rh, rw, ji, ci)
    cache = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(cache, co)
    sch.reverse_compute_at(out, co)
    sch.compute_inline(cache)
    sch.unroll(ji)
    sch.unroll(rw)
    sch.vectorize(ci)
    sch.decompose_reduction(conv, rh)
    _vectorize_tail(sch, out, sch.get_loops(out)[-1], vec)
    # Depthwise is memory-bound: a padded copy of the input costs more than the bounds tests it
    # saves (MobileNet v2's 17 depthwise convs: 0.85 -> 0.71 ms in the model, interleaved runs).
    if _has_block(sch, f"{prefix}pad"):
        sch.compute_inline(sch.get_sblock(f"{prefix}pad"))


def schedule_fc(sch: s_tir.Schedule, kb: int, vec: int) -> None:
    """GEMV-shaped FC: parallel over kb-wide output blocks, vectorised over kb, K reduced serially."""
    for blk in sch.get_child_blocks(sch.get_sblock("root")):
        if sch.get(blk).name_hint.startswith("T_reshape"):  # the NHWC view of x: fold into the loads
            sch.compute_inline(blk)
    out = sch.get_sblock("out")
    i, j = sch.get_loops(out)
    jo, ji = sch.split(j, [None, kb])
    sch.reorder(jo, i, ji)
    sch.parallel(jo)
    conv = sch.get_sblock("conv")
    sch.compute_at(conv, i)
    sch.set_scope(conv, 0, "local")
    k = int(sch.get(sch.get_loops(conv)[-1]).extent)
    lp = _tile_loops(sch, conv, {"j": kb, "r": k})
    cj, r = lp["j"], lp["r"]
    if cj is not None and r is not None:
        sch.reorder(r, cj)
    lanes = min(vec, kb)
    if cj is not None and kb > lanes:
        cjo, cjv = sch.split(cj, [None, lanes])
        sch.unroll(cjo)
        sch.vectorize(cjv)
    elif cj is not None:
        sch.vectorize(cj)
    if r is not None:
        sch.decompose_reduction(conv, r)
    _vectorize_tail(sch, out, ji, vec)


def _tile_loops(sch: s_tir.Schedule, block: s_tir.SBlock, extents: dict[str, int]) -> dict[str, object]:
    """Name the loops compute_at left under the tile: it drops unit loops, so match by position
    among the dims whose extent is > 1 (the order is the compute's: spatial, then reductions)."""
    present = [k for k, e in extents.items() if e > 1]
    loops = sch.get_loops(block)[-len(present):] if present else []
    named: dict[str, object] = dict.fromkeys(extents)
    named.update(zip(present, loops, strict=True))
    return named


def _vectorize_tail(sch: s_tir.Schedule, block: s_tir.SBlock, loop: object, vec: int) -> None:
    """Vectorise the epilogue's innermost channel loop in `vec`-wide pieces (when it is static)."""
    ext = sch.get(loop).extent
    if not hasattr(ext, "value"):
        return
    extent = int(ext.value)
    if extent > vec and extent % vec == 0:
        _, v = sch.split(loop, [None, vec])
        sch.vectorize(v)
    elif extent <= vec:
        sch.vectorize(loop)


def _has_block(sch: s_tir.Schedule, name: str) -> bool:
    try:
        sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - s_tir raises a bare error for an unknown block
        return False
    return True


def _schedule_pad(sch: s_tir.Schedule, vec: int) -> None:
    """The padding copy: parallel rows, vectorised channels."""
    if not _has_block(sch, "pad"):
        return
    pad = sch.get_sblock("pad")
    loops = sch.get_loops(pad)
    sch.parallel(sch.fuse(*loops[:2]))
    c = loops[-1]
    extent = int(sch.get(c).extent)
    if extent % vec == 0 and extent > vec:
        _, cv = sch.split(c, [None, vec])
        sch.vectorize(cv)
    elif extent <= vec:
        sch.vectorize(c)
