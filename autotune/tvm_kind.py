"""Measurement kind "tvm": a conv2d / dense kernel built with TVM, timed locally or on a board.

Runs inside a measurement worker process. The kernel is TE/TOPI compute (conv2d_nchw,
group_conv2d_nchw, dense) with either no schedule ("default") or a small s_tir schedule whose
tiles come from the choice's kernel config ("s_tir": split the output channels by `tile_o` and
the output width by `tile_w`, parallel outer, vectorised inner; dense splits its outputs by
`tile_o`). It is compiled here for the board's target and exported as a shared library, cached
on disk by (signature, choice, target), so a retried measurement is not rebuilt. Timing is TVM's
`time_evaluator`: in this process for "local", or after `remote.upload` / `load_module` on a
server obtained from an RPC tracker.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LpdcTargetError, LpdcUnsupportedError
from .keys import Choice, Signature, canonical

__all__ = ["DEVICE_TARGETS", "RemoteError", "build_kernel", "config_space", "measure_tvm", "tvm_target"]

FUNC = "kernel"

# lpdc device name -> TVM target dict and the C compiler that links its shared library.
DEVICE_TARGETS: dict[str, tuple[dict[str, Any], str]] = {
    "x86": ({"kind": "llvm"}, ""),
    "a72": ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "mattr": ["+neon"]},
            "aarch64-linux-gnu-gcc"),
    "a53": ({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a53", "mattr": ["+neon"]},
            "aarch64-linux-gnu-gcc"),
}


class RemoteError(Exception):
    """Talking to the board failed. `session` is False when no session could be had at all."""

    def __init__(self, message: str, session: bool, timed_out: bool = False) -> None:
        super().__init__(message)
        self.session = session
        self.timed_out = timed_out


def tvm_target(device: str, override: str = "") -> tuple[dict[str, Any], str]:
    """(TVM target dict, cross compiler) for an lpdc device, or the JSON `override`."""
    if override:
        try:
            tgt = json.loads(override)
        except json.JSONDecodeError as e:
            raise LpdcTargetError(f"--tvm-target must be a JSON target dict: {e}") from None
        return tgt, str(tgt.pop("cc", "")) if isinstance(tgt, dict) else ""
    if device not in DEVICE_TARGETS:
        raise LpdcTargetError(f"no TVM target for device {device!r}; known: {', '.join(DEVICE_TARGETS)}")
    tgt, cc = DEVICE_TARGETS[device]
    return dict(tgt), cc


def config_space(sig: Signature) -> list[dict[str, Any]]:
    """Kernel configs worth trying for a layer, most promising first (`--trials` takes a prefix)."""
    tiles = [(8, 8), (4, 8), (16, 8), (8, 16), (4, 16), (16, 4)]
    space: list[dict[str, Any]] = [{"schedule": "s_tir", "tile_o": o, "tile_w": w} for o, w in tiles]
    if sig.op == "fully_connected":
        space = [{"schedule": "s_tir", "tile_o": t} for t in (16, 8, 32, 4)]
    return space + [{"schedule": "default"}]


def _compute(sig: Signature) -> tuple[list[Any], list[tuple[tuple[int, ...], str]]]:
    from tvm import te, topi

    spec = sig.to_spec()
    dt = spec.dtype
    if sig.op == "conv":
        a = te.placeholder((spec.n, spec.c, spec.h, spec.w), dt, name="A")
        w = te.placeholder((spec.o, spec.cg, spec.kh, spec.kw), dt, name="W")
        if spec.group == 1:
            y = topi.nn.conv2d_nchw(a, w, spec.stride, spec.pad, spec.dilation)
        else:
            y = topi.nn.group_conv2d_nchw(a, w, spec.stride, spec.pad, spec.dilation, spec.group)
    elif sig.op == "fully_connected":
        a = te.placeholder((spec.batch, spec.k), dt, name="A")
        w = te.placeholder((spec.m, spec.k), dt, name="W")
        y = topi.nn.dense(a, w)
    else:
        raise LpdcUnsupportedError(f"the tvm measurement kind cannot build op {sig.op!r}")
    shapes = [(tuple(int(d) for d in t.shape), dt) for t in (a, w, y)]
    return [a, w, y], shapes


def _schedule(func: Any, op: str, cfg: Mapping[str, Any]) -> Any:
    """The s_tir schedule described in the module docstring; returns the scheduled IRModule."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    main = None
    for blk in sch.get_child_blocks(sch.get_sblock("root")):
        name = sch.get(blk).name_hint
        if name == "pad_temp":
            sch.compute_inline(blk)
        else:
            main = blk
    assert main is not None
    loops = sch.get_loops(main)
    to = int(cfg.get("tile_o", 8))
    if op == "fully_connected":
        i, j, k = loops
        jo, ji = sch.split(j, [None, to])
        sch.reorder(i, jo, k, ji)
        sch.parallel(sch.fuse(i, jo))
        sch.vectorize(ji)
        sch.decompose_reduction(main, k)
        return sch.mod
    n, ko_, h, w, rc, ry, rx = loops
    wo, wi = sch.split(w, [None, int(cfg.get("tile_w", 8))])
    ko, ki = sch.split(ko_, [None, to])
    sch.reorder(n, ko, h, wo, rc, ry, rx, ki, wi)
    sch.parallel(sch.fuse(n, ko))
    sch.vectorize(wi)
    sch.decompose_reduction(main, rc)  # after vectorize (see the TVM cookbook)
    return sch.mod


def build_kernel(sig: Signature, choice: Choice, target: Mapping[str, Any], cc: str,
                 cache_dir: str | os.PathLike[str]) -> tuple[Path, list[tuple[tuple[int, ...], str]]]:
    """Compile and export the kernel (cached); returns the library path and (shape, dtype) per argument."""
    import tvm

    tensors, shapes = _compute(sig)
    digest = hashlib.sha256(canonical([sig.key, choice.key, target, cc]).encode()).hexdigest()[:24]
    path = Path(cache_dir) / f"k_{digest}.so"
    if path.exists():
        return path, shapes
    func = tvm.te.create_prim_func(tensors).with_attr("global_symbol", FUNC)
    cfg = choice.config_dict()
    mod = tvm.IRModule({FUNC: func})
    if cfg.get("schedule", "default") == "s_tir":
        mod = _schedule(func, sig.op, cfg)
    lib = tvm.compile(mod, target=tvm.target.Target(dict(target)))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write under a temporary name and rename: a concurrent worker never loads a half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    if cc:
        from tvm.support import cc as _cc

        lib.export_library(tmp, fcompile=_cc.cross_compiler(cc))
    else:
        lib.export_library(tmp)
    os.replace(tmp, path)
    return path, shapes


def _time(lib: Any, dev: Any, shapes: list[tuple[tuple[int, ...], str]], repeats: int,
          min_repeat_ms: float) -> list[float]:
    import tvm

    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.standard_normal(s).astype(dt), dev) for s, dt in shapes[:-1]]
    args.append(tvm.runtime.empty(shapes[-1][0], shapes[-1][1], dev))
    lib[FUNC](*args)  # warm-up (and a crash here is the kernel's, before any timing)
    ev = lib.time_evaluator(FUNC, dev, number=1, repeat=max(1, repeats), min_repeat_ms=max(0, round(min_repeat_ms)))
    return [float(r) for r in ev(*args).results]


def _session(remote_cfg: Mapping[str, Any], tries: int = 3) -> tuple[Any, str]:
    """A session on a free server under the key, and that server's address.

    The tracker protocol of `TrackerSession.request`, spelled out so the server's address is
    known (it goes into the measurement row: which board measured what)."""
    from tvm import rpc
    from tvm.rpc import base

    host, port = remote_cfg["tracker"]
    key = str(remote_cfg["key"])
    last: Exception | None = None
    for _ in range(tries):
        try:
            tracker = rpc.connect_tracker(str(host), int(port))
            try:
                base.sendjson(tracker._sock, [base.TrackerCode.REQUEST, key, "", 1])
                reply = base.recvjson(tracker._sock)
            finally:
                tracker.close()
            if reply[0] != base.TrackerCode.SUCCESS:
                raise RuntimeError(f"tracker answered {reply!r}")
            url, sport, matchkey = reply[1]
            sess = rpc.connect(url, sport, matchkey, session_timeout=float(remote_cfg["session_timeout"]))
            return sess, f"{url}:{sport}"
        except Exception as e:  # noqa: BLE001 - a server that just died, a busy tracker: try again
            last = e
    raise RemoteError(f"no session for key {key!r}: {type(last).__name__}: {last}", session=False)


def _time_remote(path: Path, shapes: list[tuple[tuple[int, ...], str]], remote_cfg: Mapping[str, Any],
                 repeats: int, min_repeat_ms: float, on_start: Callable[[str], None]) -> list[float]:
    sess, server = _session(remote_cfg)
    try:
        sess.upload(str(path))
        lib = sess.load_module(path.name)
        on_start(server)
        return _time(lib, sess.cpu(), shapes, repeats, min_repeat_ms)
    except Exception as e:  # noqa: BLE001 - the session or the board failed; the caller decides
        text = f"{type(e).__name__}: {e}"
        raise RemoteError(f"on {server}: {text}", session=True, timed_out="RPCSessionTimeoutError" in text) from e


def measure_tvm(sig: Signature, choice: Choice, repeats: int, min_repeat_ms: float, on_start: Callable[[str], None],
                target_override: str = "", remote: Mapping[str, Any] | None = None,
                cache_dir: str | os.PathLike[str] | None = None) -> list[float]:
    """Seconds per run of the TVM kernel `choice` for layer `sig` (locally or on `remote`).

    `on_start(server)` is called when the timed part begins, with the server's address if remote."""
    target, cc = tvm_target(choice.device or "x86", target_override)
    cache = Path(cache_dir or Path(tempfile.gettempdir()) / "lpdc-tvm-kernels")
    path, shapes = build_kernel(sig, choice, target, cc, cache)
    if remote:
        return _time_remote(path, shapes, remote, repeats, min_repeat_ms, on_start)
    if cc:
        raise LpdcTargetError(f"a kernel for {choice.device} cannot run on this host: use --tracker/--key")
    import tvm

    lib = tvm.runtime.load_module(str(path))
    on_start("")
    return _time(lib, tvm.cpu(), shapes, repeats, min_repeat_ms)
