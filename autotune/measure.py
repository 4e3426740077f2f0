"""Measurement runners: tasks go to worker processes, outcomes come back with deadlines enforced.

A `Task` is one (kind, layer signature, choice) to time. A `WorkerProcess` is one
`python -m lpdc.autotune.worker` subprocess in its own process group: a task is sent to it, and
the reply must come within `setup_timeout_s` (build, RPC session) plus `timeout_s` from the
moment the timed part starts. A worker that misses its deadline is killed (whole process group)
and the task is a "timeout"; a worker that dies is a "failed" with its exit status and the tail
of its stderr; either way the next task gets a fresh worker, and the campaign goes on.

`Runner.run(tasks, on_outcome)` spreads tasks over the runner's workers (one thread each) and
calls `on_outcome` in the caller's thread for each recordable outcome. RPC failures:
- no session could be had (tracker unreachable, no free board): the task goes back to the queue
  uncounted; a worker that cannot get a session three times in a row retires;
- the session died mid-measurement (board crashed or rebooted): the task is retried on a new
  session (possibly another board) up to `max_attempts`, then recorded as failed.
`LocalRunner` times on the host with one worker (parallel timings would disturb each other);
`RPCRunner` (autotune/rpc.py) uses one worker per server registered under the tracker key.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import LpdcError
from .keys import Choice, Fingerprint, Signature

__all__ = ["LocalRunner", "Outcome", "Runner", "Task", "WorkerProcess"]

log = logging.getLogger(__name__)
_ids = itertools.count(1)
# Environment variables that set the thread count of the BLAS libraries NumPy may use.
_THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


@dataclass(frozen=True)
class Task:
    """One measurement to take. `kind` is "numpy" (catalog primitive, host only), "tvm" or "meta_schedule"."""

    kind: str
    signature: Signature
    choice: Choice
    repeats: int = 5
    min_repeat_ms: float = 1.0
    timeout_s: float = 10.0
    tvm_target: str = ""  # JSON target dict overriding the choice device's default
    payload: Mapping[str, Any] = field(default_factory=dict, compare=False)  # how to rebuild the layer
    clock: str = "wall"  # "cpu": process CPU time (numpy kind only; see numpy_kind.time_callable)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "signature": self.signature.key, "choice": self.choice.key,
                "repeats": self.repeats, "min_repeat_ms": self.min_repeat_ms, "tvm_target": self.tvm_target,
                "payload": dict(self.payload), "clock": self.clock}

    @property
    def key(self) -> tuple[str, str]:
        return (self.signature.key, self.choice.key)


@dataclass
class Outcome:
    """What a worker reported for a task. `status` ok/failed/timeout is recorded; "unavailable"
    (no session could be had) never is."""

    task: Task
    status: str
    samples: list[float] = field(default_factory=list)
    error: str = ""
    worker: str = ""
    retry: bool = False  # the session died mid-measurement: worth another try elsewhere
    attempts: int = 1
    found: dict[str, Any] | None = None  # what the measurement learnt (meta_schedule: the tuned trace)


class _Lines:
    """Line reader over a raw pipe fd with a deadline (select + os.read; no hidden buffering)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def readline(self, deadline: float) -> str | None:
        """The next line, or None at the deadline; raises EOFError when the pipe closed."""
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            ready, _, _ = select.select([self.fd], [], [], min(left, 1.0))
            if not ready:
                continue
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode("utf-8", "replace")


class WorkerProcess:
    """One measurement worker subprocess, restarted on demand after a kill or a crash."""

    def __init__(self, name: str, plugins: Sequence[str] = (), socket_timeout_s: float = 0.0,
                 start_timeout_s: float = 120.0, env: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.plugins = list(plugins)
        self.socket_timeout_s = socket_timeout_s
        self.start_timeout_s = start_timeout_s
        self.env = dict(env) if env is not None else None
        self.proc: subprocess.Popen[bytes] | None = None
        self.server = ""  # the RPC server the current task runs on, once known
        self._lines: _Lines | None = None
        self._stderr: Any = None

    @property
    def where(self) -> str:
        """This worker, and the server it measured on (`board#0@127.0.0.1:9091`)."""
        return f"{self.name}@{self.server}" if self.server else self.name

    def _start(self) -> None:
        cmd = [sys.executable, "-m", "lpdc.autotune.worker"]
        for p in self.plugins:
            cmd += ["--plugin", p]
        if self.socket_timeout_s > 0:
            cmd += ["--socket-timeout", str(self.socket_timeout_s)]
        env = dict(os.environ if self.env is None else self.env)
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p) + os.pathsep + env.get("PYTHONPATH", "")
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=env, start_new_session=True)
        assert self.proc.stdout is not None
        self._lines = _Lines(self.proc.stdout.fileno())
        try:
            line = self._lines.readline(time.monotonic() + self.start_timeout_s)
        except EOFError:
            line = None
        if line is None or not json.loads(line).get("ready"):
            tail = self._stderr_tail()
            self.kill()
            raise LpdcError(f"measurement worker {self.name} did not start: {tail}")
        log.debug("worker %s started (pid %d)", self.name, self.proc.pid)

    def _stderr_tail(self, n: int = 1500) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.seek(0, os.SEEK_END)
            size = self._stderr.tell()
            self._stderr.seek(max(0, size - n))
            return self._stderr.read().decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def kill(self) -> None:
        """Kill the worker's whole process group (kernels may have started children)."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    try:  # a buffered write to the dead worker fails again on flush; the fd still closes
                        f.close()
                    except OSError:
                        pass
        if self._stderr is not None:
            self._stderr.close()
        self.proc, self._lines, self._stderr = None, None, None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None and self.proc.stdin is not None:
            try:
                self.proc.stdin.write(b'{"exit": true}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=5)
            except (OSError, subprocess.TimeoutExpired):
                pass
        self.kill()

    def run(self, task: Task, extra: Mapping[str, Any] | None = None, setup_timeout_s: float = 300.0) -> Outcome:
        """Send `task`, wait for its outcome under the deadlines, kill the worker if they pass."""
        if self.proc is None or self.proc.poll() is not None:
            self.kill()
            self._start()
        assert self.proc is not None and self.proc.stdin is not None and self._lines is not None
        tid = next(_ids)
        msg = {"id": tid, **task.to_json(), **(extra or {})}
        try:
            self.proc.stdin.write((json.dumps(msg) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as e:
            return self._died(task, f"worker pipe closed: {e}")
        deadline, started, self.server = time.monotonic() + setup_timeout_s, False, ""
        while True:
            try:
                line = self._lines.readline(deadline)
            except EOFError:
                return self._died(task, "the measurement worker died")
            if line is None:
                what = f"no result within {task.timeout_s:g} s" if started else \
                    f"no start within the {setup_timeout_s:g} s setup limit"
                self.kill()
                return Outcome(task, "timeout", error=what, worker=self.where)
            reply = json.loads(line)
            if reply.get("id") != tid:
                continue
            if reply.get("phase") == "run":
                started, deadline = True, time.monotonic() + task.timeout_s
                self.server = str(reply.get("server") or "")
                continue
            return self._outcome(task, reply)

    def _outcome(self, task: Task, reply: dict[str, Any]) -> Outcome:
        status = str(reply.get("status", "failed"))
        if status == "failed" and reply.get("retry") and not reply.get("session", True):
            status = "unavailable"
        error = str(reply.get("error", ""))
        if reply.get("trace"):
            log.debug("worker %s: %s\n%s", self.name, error, reply["trace"])
        found = reply.get("found")
        return Outcome(task, status, [float(s) for s in reply.get("samples", [])], error, self.where,
                       bool(reply.get("retry")), found=found if isinstance(found, dict) else None)

    def _died(self, task: Task, what: str) -> Outcome:
        code = self.proc.poll() if self.proc is not None else None
        if code is None and self.proc is not None:
            try:
                code = self.proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
        tail = self._stderr_tail(600)
        self.kill()
        sig = f" (signal {-code})" if code is not None and code < 0 else f" (exit {code})"
        return Outcome(task, "failed", error=f"{what}{sig}: {tail[-500:]}".strip(), worker=self.where)


class Runner:
    """Runs tasks over `workers()` and hands outcomes to the caller's thread."""

    fingerprint: Fingerprint
    max_attempts: int = 2
    retire_after: int = 3
    setup_timeout_s: float = 300.0
    search_trial_s: float = 30.0  # more setup time per meta_schedule trial: its search runs before the timing

    def setup_timeout(self, task: Task) -> float:
        """The setup limit of `task`: a meta_schedule search's time grows with its trial count."""
        if task.kind != "meta_schedule":
            return self.setup_timeout_s
        return self.setup_timeout_s + self.search_trial_s * int(task.choice.config_dict().get("trials", 8))

    def workers(self) -> list[WorkerProcess]:
        raise NotImplementedError

    def task_extra(self, task: Task) -> dict[str, Any]:
        """Per-task fields for the worker (the RPC endpoint, the kernel cache)."""
        return {}

    def run(self, tasks: Iterable[Task], on_outcome: Callable[[Outcome], None],
            stop: Callable[[], bool] = lambda: False) -> list[Task]:
        """Measure `tasks`; returns those left unmeasured (budget reached, or no worker left)."""
        pending: deque[tuple[Task, int]] = deque((t, 1) for t in tasks)
        results: queue.Queue[Outcome | None] = queue.Queue()
        cond = threading.Condition()
        state = {"inflight": 0, "stopped": False}
        workers = self.workers()
        threads = [threading.Thread(target=self._loop, args=(w, pending, results, cond, state, stop),
                                    name=f"autotune-{w.name}", daemon=True) for w in workers]
        for t in threads:
            t.start()
        alive = len(threads)
        try:
            while alive:
                item = results.get()
                if item is None:
                    alive -= 1
                else:
                    on_outcome(item)
        finally:
            with cond:
                state["stopped"] = True
                cond.notify_all()
            for w in workers:
                if any(t.is_alive() for t in threads):
                    w.kill()  # interrupted: a worker may be mid-measurement
                else:
                    w.close()
        return [t for t, _ in pending]

    def _next(self, pending: deque[tuple[Task, int]], cond: threading.Condition, state: dict[str, Any],
              stop: Callable[[], bool]) -> tuple[Task, int] | None:
        with cond:
            while True:
                if state["stopped"] or stop():
                    return None
                if pending:
                    state["inflight"] += 1
                    return pending.popleft()
                if not state["inflight"]:
                    return None
                cond.wait(0.5)  # a task in flight elsewhere may come back for a retry

    def _loop(self, w: WorkerProcess, pending: deque[tuple[Task, int]], results: queue.Queue[Outcome | None],
              cond: threading.Condition, state: dict[str, Any], stop: Callable[[], bool]) -> None:
        misses = 0
        item = None
        try:
            while (item := self._next(pending, cond, state, stop)) is not None:
                task, attempt = item
                try:
                    out = w.run(task, self.task_extra(task), self.setup_timeout(task))
                except LpdcError as e:  # the worker cannot even start: give the task back, retire
                    log.error("%s", e)
                    return
                except (OSError, ValueError) as e:  # a garbled reply: the worker is not to be trusted
                    w.kill()
                    out = Outcome(task, "failed", error=f"measurement worker protocol error: {e}", worker=w.name)
                out.attempts = attempt
                if out.status == "unavailable":
                    misses += 1
                    log.warning("worker %s: %s", w.name, out.error)
                    self._requeue(pending, cond, state, item)
                    item = None
                    if misses >= self.retire_after:
                        log.warning("worker %s retires: no session %d times in a row", w.name, misses)
                        return
                    continue
                misses = 0
                if out.retry and attempt < self.max_attempts:
                    log.warning("worker %s: session lost (%s); retrying %s", w.name, out.error, task.choice.label)
                    self._requeue(pending, cond, state, (task, attempt + 1))
                    item = None
                    continue
                with cond:
                    state["inflight"] -= 1
                    cond.notify_all()
                item = None
                results.put(out)
        finally:
            if item is not None:  # leaving with a task in hand: it goes back for the other workers
                self._requeue(pending, cond, state, item)
            results.put(None)

    @staticmethod
    def _requeue(pending: deque[tuple[Task, int]], cond: threading.Condition, state: dict[str, Any],
                 item: tuple[Task, int]) -> None:
        with cond:
            pending.append(item)
            state["inflight"] -= 1
            cond.notify_all()


class LocalRunner(Runner):
    """Measures on this host, one task at a time, in a worker subprocess."""

    def __init__(self, target: str = "numpy", plugins: Sequence[str] = (), cache_dir: str | None = None,
                 fingerprint: Fingerprint | None = None, threads: int | None = None, clock: str = "auto") -> None:
        if clock not in ("auto", "wall", "cpu"):
            raise LpdcError(f"clock must be auto, wall or cpu, got {clock!r}")
        if clock == "cpu" and target != "numpy":
            raise LpdcError("--clock cpu applies to the numpy target only (TVM times with its own evaluator)")
        fp = fingerprint or Fingerprint.host(target, threads, clock)
        self.fingerprint = fp
        self.plugins = list(plugins)
        self.cache_dir = cache_dir
        self.threads = threads  # BLAS threads in the worker (None: the library's default)

    def workers(self) -> list[WorkerProcess]:
        env = None
        if self.threads:
            env = {**os.environ, **{v: str(self.threads) for v in _THREAD_VARS}}
        return [WorkerProcess("local", self.plugins, env=env)]

    def task_extra(self, task: Task) -> dict[str, Any]:
        return {"cache_dir": self.cache_dir} if self.cache_dir else {}
