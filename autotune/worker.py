"""A measurement worker process: `python -m lpdc.autotune.worker [--plugin MODULE ...]`.

Protocol (JSON lines): the worker writes {"ready": true, "pid": N} once imported, then reads one
task per line from stdin and answers on its original stdout with
  {"id": I, "phase": "run"}                       when the timed part starts (the timeout clock), then
  {"id": I, "status": "ok", "samples": [...]}     (meta_schedule adds "found": {trace hash, file}) or
  {"id": I, "status": "failed"|"timeout", "error": "...", "retry": bool, "session": bool}.
Anything else the kernels print goes to stderr, so it cannot corrupt the protocol. The parent
(autotune/measure.py) kills the worker when a deadline passes and starts a new one.

Plugins are modules imported at start (e.g. ones that register extra catalog primitives). The
worker dies with its parent (PR_SET_PDEATHSIG where available, and a watchdog on the parent
pid), so a campaign killed with SIGKILL leaves no worker behind.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Sequence
from typing import IO, Any

from .keys import Choice, Signature


def _die_with_parent() -> None:
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while True:
            if os.getppid() != parent:
                os._exit(3)
            time.sleep(0.5)

    threading.Thread(target=watch, daemon=True, name="parent-watchdog").start()


def run_task(task: dict[str, Any], send: Any) -> dict[str, Any]:
    """Measure one task; returns the reply (never raises for a measurement failure)."""
    tid = task.get("id")
    sig, choice = Signature.coerce(task["signature"]), Choice.coerce(task["choice"])

    where = {"server": ""}

    def on_start(server: str = "") -> None:
        where["server"] = server
        send({"id": tid, "phase": "run", "server": server})

    try:
        if task["kind"] == "numpy":
            from .numpy_kind import measure_numpy

            samples = measure_numpy(sig, choice, int(task["repeats"]), float(task["min_repeat_ms"]), on_start,
                                    task.get("payload"), task.get("clock", "wall"))
        elif task["kind"] == "tvm":
            from .tvm_kind import measure_tvm

            samples = measure_tvm(sig, choice, int(task["repeats"]), float(task["min_repeat_ms"]), on_start,
                                  task.get("tvm_target", ""), task.get("remote"), task.get("cache_dir"))
        elif task["kind"] == "meta_schedule":  # `found` names the tuned trace (autotune/ms_kind.py)
            from .ms_kind import measure_ms

            samples, found = measure_ms(sig, choice, int(task["repeats"]), float(task["min_repeat_ms"]), on_start,
                                        task.get("tvm_target", ""), task.get("remote"), task.get("cache_dir"))
            return {"id": tid, "status": "ok", "samples": samples, "server": where["server"], "found": found}
        else:
            return {"id": tid, "status": "failed", "error": f"unknown measurement kind {task['kind']!r}"}
    except Exception as e:  # noqa: BLE001 - every failure of a kernel is recorded, not raised
        from .tvm_kind import RemoteError

        reply: dict[str, Any] = {"id": tid, "status": "failed", "error": f"{type(e).__name__}: {e}"}
        if isinstance(e, RemoteError):
            reply.update(retry=not e.timed_out, session=e.session)
            if e.timed_out:
                reply["status"] = "timeout"
        else:
            reply["trace"] = traceback.format_exc(limit=6)
        return reply
    return {"id": tid, "status": "ok", "samples": samples, "server": where["server"]}


def serve(stdin: IO[str], out: IO[str]) -> None:
    lock = threading.Lock()

    def send(msg: dict[str, Any]) -> None:
        with lock:
            out.write(json.dumps(msg) + "\n")
            out.flush()

    send({"ready": True, "pid": os.getpid()})
    for line in stdin:
        if not line.strip():
            continue
        task = json.loads(line)
        if task.get("exit"):
            break
        send(run_task(task, send))


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lpdc.autotune.worker")
    p.add_argument("--plugin", action="append", default=[], help="module to import first")
    p.add_argument("--socket-timeout", type=float, default=0.0, help="default timeout of Python sockets")
    args = p.parse_args(argv)
    # Keep the protocol on a private copy of stdout; fd 1 (prints, C libraries) goes to stderr.
    out = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _die_with_parent()
    if args.socket_timeout > 0:
        import socket

        # Bounds the wait for a free board in the tracker's queue (the tracker socket is Python's).
        socket.setdefaulttimeout(args.socket_timeout)
    for name in args.plugin:
        importlib.import_module(name)
    serve(sys.stdin, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
