"""Per conv layer, the fastest of several TVM kernels, measured on this host (`compile_tvm(variants=...)`).

The default register tile is a score computed from the shape (schedules/x86_conv.py); the best
tile on a given CPU is found by timing. "measure" builds, for every distinct f32 conv kernel of
the graph, the direct template with its `TOP_TILES` best-scored register tiles and, for 3x3
stride-1 layers, Winograd F(2x2) and F(4x4) (winograd.py), times each with
sparse_select.time_lowered and keeps the fastest. "default" (the default) keeps lower.py's shape
rule untimed (the scored tile, or Winograd where winograd.default_winograd_m says so). Times
persist in a JSON file keyed by (target, threads, kernel) — `$LPDC_TVM_TIMES`, else
~/.cache/lpdc/tvm_kernel_times.json — so a recompile (or another model with the same layer
shapes) measures nothing again. Every decision is recorded per node in
`exe.variant_choices`: {"picked": label, "times": {label: seconds}, "how": "measured" | "cached",
"used": whether the picks run: variant_check.py keeps them only if the whole model is faster}.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ...errors import LpdcError, LpdcTargetError, LpdcUnsupportedError
from ...ir import Graph, Node
from .lower import Lowered, lower_node
from .target import TvmTarget

log = logging.getLogger(__name__)

MODES = ("default", "measure")
TOP_TILES = 5  # register tiles tried per layer (best-scored first)
TIMES_ENV = "LPDC_TVM_TIMES"

Progress = Callable[[str, int], Callable[[], None]]


def times_path() -> Path:
    env = os.environ.get(TIMES_ENV)
    return Path(env) if env else Path.home() / ".cache" / "lpdc" / "tvm_kernel_times.json"


class TimeCache:
    """Measured kernel seconds on disk, keyed by sha256 of (target spec, TVM threads, Lowered.key)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.data: dict[str, float] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.data = {}
        self.dirty = False

    @staticmethod
    def key(tt: TvmTarget, low: Lowered) -> str:
        from .threads import ensure_threads

        return hashlib.sha256(repr((sorted(tt.spec.items()), ensure_threads(), low.key)).encode()).hexdigest()[:32]

    def get(self, tt: TvmTarget, low: Lowered) -> float | None:
        return self.data.get(self.key(tt, low))

    def put(self, tt: TvmTarget, low: Lowered, seconds: float) -> None:
        self.data[self.key(tt, low)] = seconds
        self.dirty = True

    def save(self) -> None:
        """Atomically (a temporary file renamed over the old one); a failure only loses the cache."""
        if not self.dirty:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
            with os.fdopen(fd, "w") as f:
                json.dump(self.data, f)
            os.replace(tmp, self.path)
        except OSError as e:
            log.warning("kernel times not saved to %s: %s", self.path, e)


def candidates(node: Node, g: Graph, tt: TvmTarget) -> list[tuple[str, Lowered]]:
    """(label, kernel) for every variant of an f32 dense conv; [] when the node has no choice."""
    from .schedules.x86_conv import ranked_conv_knobs

    vec = max(tt.vec, 4)
    try:
        default = lower_node(node, g, vec, None, tt.registers, sparse=False, algorithm="direct")
    except LpdcUnsupportedError:
        return []
    if default.schedule != "conv":
        return []
    s = default.info["shape"]
    best = default.info["knobs"]
    out = [("direct " + _tile(best), default)]
    flipped = replace(best, rows_outer=not best.rows_outer)  # the other loop order of the default tile
    for kn in [*ranked_conv_knobs(s, vec, tt.registers)[:TOP_TILES], flipped]:
        if kn != best:
            out.append(("direct " + _tile(kn),
                        lower_node(node, g, vec, kn, tt.registers, sparse=False, algorithm="direct")))
    out += _winograd(node, g, vec)
    return out


def _tile(kn: Any) -> str:
    return f"{kn.ow_tile}x{kn.oc_tile}" + (" rows-outer" if kn.rows_outer else "")


def _winograd(node: Node, g: Graph, vec: int) -> list[tuple[str, Lowered]]:
    out = []
    for m in (2, 4):
        try:
            out.append((f"winograd F({m}x{m},3x3)", lower_node(node, g, vec, sparse=False, algorithm=f"winograd{m}")))
        except LpdcUnsupportedError:
            pass
    return out


def select_variants(g: Graph, tt: TvmTarget, mode: str, only: set[str] | None = None,
                    progress: Progress | None = None, rows_outer: frozenset[str] | set[str] = frozenset(),
                    ) -> tuple[dict[str, Lowered], dict[str, dict[str, Any]]]:
    """(node name -> the kernel to use, node name -> the decision record) under `mode`.
    `rows_outer`: convs whose candidates are the rows-outer tiles only (1x1 convs that fuse with
    their depthwise producer only on such a tile: dw_pw_fusion.py)."""
    if mode not in MODES:
        raise LpdcError(f"variants must be one of {', '.join(MODES)}, not {mode!r}")
    if mode == "default":
        return {}, {}
    if not tt.runs_here:
        raise LpdcTargetError(f"variants='measure' times kernels on this host; target {tt.name!r} builds for "
                              "another machine", where=tt.name)
    from .sparse_select import time_lowered

    cache = TimeCache(times_path())
    convs = [n for n in g.nodes if n.op == "conv" and (only is None or n.name in only)]
    tick = progress("timing kernel variants", len(convs)) if progress is not None else None
    picked: dict[str, Lowered] = {}
    records: dict[str, dict[str, Any]] = {}
    try:
        for node in convs:
            options = candidates(node, g, tt)
            if node.name in rows_outer:
                options = [o for o in options if o[1].schedule == "conv" and o[1].info["knobs"].rows_outer]
            if len(options) > 1:
                times, how = {}, "cached"
                for label, low in options:
                    t = cache.get(tt, low)
                    if t is None:
                        t, how = _time(low, tt, time_lowered), "measured"
                        cache.put(tt, low, t)
                    times[label] = t
                best = min(options, key=lambda o: times[o[0]])
                picked[node.name] = best[1]
                records[node.name] = {"picked": best[0], "times": times, "how": how}
            if tick is not None:
                tick()
    finally:
        cache.save()
    return picked, records


def replay(g: Graph, tt: TvmTarget, picked: dict[str, str], where: str = "") -> dict[str, Lowered]:
    """node name -> the kernel of the variant labelled `picked[node]` (an artifact's choices)."""
    by_name = {n.name: n for n in g.nodes}
    out = {}
    for name, label in picked.items():
        node = by_name.get(name)
        found = dict(candidates(node, g, tt)).get(label) if node is not None else None
        if found is None:
            raise LpdcError(f"kernel variant {label!r} of node {name!r} cannot be rebuilt (another lpdc version?)",
                            where=where)
        out[name] = found
    return out


def _time(low: Lowered, tt: TvmTarget, time_lowered: Callable[[Lowered, TvmTarget], float]) -> float:
    try:
        return time_lowered(low, tt)
    except Exception as e:  # noqa: BLE001 - a variant that cannot be built or run only loses
        log.warning("kernel variant not timed (%s)", str(e).splitlines()[0][:200] if str(e) else e)
        return float("inf")
