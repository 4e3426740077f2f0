"""Measuring on boards through TVM's RPC tracker, and starting trackers and servers.

`RPCRunner` asks the tracker how many servers are registered under the board key and runs one
measurement worker per server; each task gets its own session from the tracker (the tracker
hands out whichever board is free, so the work spreads over all of them and a dead board simply
stops being handed out). The session timeout is the task's timeout plus a margin, so a board
whose kernel hangs is freed by its own server.

`start_tracker` / `start_server` run `python -m tvm.exec.rpc_tracker` / `rpc_server` in their
own process groups (tests, `lpdc rpc`); `stop()` kills the whole group, including the
`popen_worker` children that a plain SIGTERM would orphan. Endpoints bind to 127.0.0.1 unless
`allow_remote=True` is given explicitly: an RPC server runs whatever code a client uploads.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import LpdcError
from .keys import Fingerprint
from .measure import Runner, Task, WorkerProcess

__all__ = ["LocalCluster", "RPCProcess", "RPCRunner", "check_bind", "free_port", "group_alive", "start_local_cluster",
           "start_server", "start_tracker", "tracker_servers", "wait_for_servers"]

log = logging.getLogger(__name__)

SESSION_MARGIN_S = 15.0  # upload + load_module on top of the kernel's own time limit


def check_bind(host: str, allow_remote: bool) -> None:
    """Refuse a non-loopback bind address unless the caller explicitly allowed it."""
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback and not allow_remote:
        raise LpdcError(f"refusing to bind an RPC endpoint to {host!r}: RPC servers run uploaded code; "
                        "pass --allow-remote (allow_remote=True) to expose it beyond this machine")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class RPCProcess:
    """A tracker or server subprocess (its own process group)."""

    kind: str
    host: str
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self, sig: int = signal.SIGKILL, timeout_s: float = 10.0) -> None:
        """Kill the process group and wait until no member is running."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                os.killpg(self.proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                break
            try:
                self.proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                pass
            if not group_alive(self.proc.pid):
                break
            if time.monotonic() > deadline:
                log.warning("%s %d: process group still alive after %g s", self.kind, self.proc.pid, timeout_s)
                break

    def alive(self) -> bool:
        return self.proc.poll() is None


def group_alive(pgid: int) -> bool:
    """Whether any process of group `pgid` still runs (zombies waiting for init do not count)."""
    proc = Path("/proc")
    if not proc.is_dir():  # no procfs: ask the kernel whether the group exists at all
        try:
            os.killpg(pgid, 0)
            return True
        except (ProcessLookupError, PermissionError):
            return False
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state ppid pgrp ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def _spawn(kind: str, host: str, args: Sequence[str], port: int, log_path: str | None) -> RPCProcess:
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 - handed to the child
    try:
        proc = subprocess.Popen([sys.executable, "-m", f"tvm.exec.rpc_{kind}", "--host", host, "--port", str(port),
                                 "--port-end", str(port + 1), *args], stdout=out, stderr=out,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    finally:
        if log_path:
            out.close()  # type: ignore[union-attr]
    return RPCProcess(kind, host, port, proc)


def start_tracker(host: str = "127.0.0.1", port: int = 0, allow_remote: bool = False,
                  log_path: str | None = None, timeout_s: float = 60.0) -> RPCProcess:
    """Start an RPC tracker and wait until it accepts connections."""
    check_bind(host, allow_remote)
    port = port or free_port(host)
    tr = _spawn("tracker", host, [], port, log_path)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not tr.alive():
            raise LpdcError(f"the RPC tracker exited with status {tr.proc.returncode}", where=f"{host}:{port}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return tr
        except OSError:
            time.sleep(0.1)
    tr.stop()
    raise LpdcError(f"the RPC tracker did not come up within {timeout_s:g} s", where=f"{host}:{port}")


def start_server(tracker: tuple[str, int], key: str, host: str = "127.0.0.1", port: int = 0,
                 allow_remote: bool = False, log_path: str | None = None) -> RPCProcess:
    """Start an RPC server registering under `key` (see `wait_for_servers`)."""
    check_bind(host, allow_remote)
    port = port or free_port(host)
    return _spawn("server", host, ["--tracker", f"{tracker[0]}:{tracker[1]}", "--key", key], port, log_path)


def tracker_servers(host: str, port: int, key: str) -> int:
    """How many servers are registered at the tracker under `key` (busy or free)."""
    from tvm import rpc

    try:
        client = rpc.connect_tracker(host, port)
        summary: dict[str, Any] = client.summary()
        client.close()
    except (OSError, RuntimeError) as e:
        raise LpdcError(f"cannot query the RPC tracker: {e}", where=f"{host}:{port}") from None
    return sum(1 for s in summary.get("server_info", []) if s.get("key") == f"server:{key}")


def wait_for_servers(host: str, port: int, key: str, count: int, timeout_s: float = 60.0) -> int:
    """Wait until at least `count` servers are registered under `key`; returns the number seen."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while time.monotonic() < deadline:
        seen = tracker_servers(host, port, key)
        if seen >= count:
            return seen
        time.sleep(0.2)
    raise LpdcError(f"only {seen} of {count} RPC servers registered under key {key!r} within {timeout_s:g} s",
                    where=f"{host}:{port}")


@dataclass
class LocalCluster:
    """A tracker and servers on this machine (tests, trying a campaign without boards)."""

    key: str
    tracker: RPCProcess
    servers: list[RPCProcess]

    @property
    def address(self) -> tuple[str, int]:
        return (self.tracker.host, self.tracker.port)

    def stop(self) -> None:
        for p in [*self.servers, self.tracker]:
            p.stop()


def start_local_cluster(key: str, servers: int = 2, host: str = "127.0.0.1", allow_remote: bool = False,
                        log_dir: str | None = None, timeout_s: float = 90.0) -> LocalCluster:
    """Start a tracker, then `servers` servers under `key`, and wait until all are registered.

    The tracker must be up before the servers start: a server that finds no tracker waits 5 s
    before it tries again. On any failure everything started so far is stopped."""
    logs = (lambda name: os.path.join(log_dir, f"{name}.log")) if log_dir else (lambda name: None)
    tracker = start_tracker(host, 0, allow_remote, logs("tracker"), timeout_s)
    cluster = LocalCluster(key, tracker, [])
    try:
        for i in range(servers):
            cluster.servers.append(start_server((host, tracker.port), key, host, 0, allow_remote, logs(f"server{i}")))
        wait_for_servers(host, tracker.port, key, servers, timeout_s)
    except BaseException:
        cluster.stop()
        raise
    return cluster


class RPCRunner(Runner):
    """Measures TVM kernels on the boards registered under `key` at a tracker."""

    def __init__(self, tracker: tuple[str, int], key: str, target: str, device_model: str = "",
                 request_timeout_s: float = 120.0, plugins: Sequence[str] = (), cache_dir: str | None = None,
                 workers: int = 0) -> None:
        self.tracker = (tracker[0], int(tracker[1]))
        self.key = key
        self.fingerprint = Fingerprint(target, key, device_model, "")
        self.request_timeout_s = request_timeout_s
        self.plugins = list(plugins)
        self.cache_dir = cache_dir
        self.n_workers = workers

    def workers(self) -> list[WorkerProcess]:
        n = self.n_workers or tracker_servers(*self.tracker, self.key)
        if n == 0:
            raise LpdcError(f"no RPC server is registered under key {self.key!r}",
                            where=f"tracker {self.tracker[0]}:{self.tracker[1]}")
        log.info("%d RPC server(s) under key %r: %d worker(s)", n, self.key, n)
        return [WorkerProcess(f"{self.key}#{i}", self.plugins, socket_timeout_s=self.request_timeout_s)
                for i in range(n)]

    def task_extra(self, task: Task) -> dict[str, Any]:
        extra: dict[str, Any] = {"remote": {"tracker": list(self.tracker), "key": self.key,
                                            "session_timeout": task.timeout_s + SESSION_MARGIN_S}}
        if self.cache_dir:
            extra["cache_dir"] = self.cache_dir
        return extra
