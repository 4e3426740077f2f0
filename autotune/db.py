"""The measurement database: one SQLite file, one row per (device, layer signature, choice).

Durability: WAL journal, `synchronous=FULL`, and every row committed on its own as it arrives, so a
campaign killed at any instant keeps every measurement it had reported. Concurrency: several
processes may write at once (WAL lets readers run beside the single writer; writers wait on the
busy timeout, and a locked database is retried with backoff). The unique key makes writes
idempotent: INSERT OR IGNORE keeps the first row, so a measurement is never stored twice;
`record(..., replace_failed=True)` upserts over a failed/timed-out row only (a retry of a
failure), never over a good one.

Rows carry status (ok / failed / timeout), the repeat count, median, spread (interquartile
range), minimum and raw samples in seconds, the error text, which campaign and worker wrote
them, and `found`: what the measurement learnt that its key could not name in advance (a JSON
object or NULL; meta_schedule's tuned trace hash and file). `export_jsonl` / `import_jsonl` move
rows between databases (one JSON object per line).

Schema version 2 added `found`. Opening a version-1 file adds the column (ALTER TABLE, once,
under a write lock so two processes opening it together cannot both try) and moves the trace
notes version 1 kept in `error` into it; every row is kept, and version-1 code can still write
to the file (its INSERTs name their columns, leaving `found` NULL).
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TypeVar

from ..errors import LpdcError
from .keys import Choice, Fingerprint, Signature

__all__ = ["Database", "DatabaseCostSource", "Measurement", "STATUSES"]

log = logging.getLogger(__name__)

STATUSES = ("ok", "failed", "timeout")
SCHEMA_VERSION = "2"
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY,
    device TEXT NOT NULL,
    signature TEXT NOT NULL,
    choice TEXT NOT NULL,
    op TEXT NOT NULL,
    primitive TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL CHECK (status IN ('ok', 'failed', 'timeout')),
    repeats INTEGER NOT NULL DEFAULT 0,
    median_s REAL,
    spread_s REAL,
    min_s REAL,
    samples TEXT NOT NULL DEFAULT '[]',
    error TEXT NOT NULL DEFAULT '',
    campaign TEXT NOT NULL DEFAULT '',
    worker TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    found TEXT,
    UNIQUE (device, signature, choice)
);
CREATE INDEX IF NOT EXISTS measurements_lookup ON measurements (device, signature, primitive);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

_COLUMNS = ("device", "signature", "choice", "op", "primitive", "kind", "status", "repeats", "median_s",
            "spread_s", "min_s", "samples", "error", "campaign", "worker", "created", "found")
# The note schema version 1 kept a meta_schedule row's tuned trace in (autotune/ms_kind.py).
_LEGACY_NOTE = re.compile(r"meta_schedule trace sha256=([0-9a-f]{64}) \((\d+) trials; trace in (\S+)\)")


@dataclass(frozen=True)
class Measurement:
    """One measured (device, signature, choice): timings in seconds, or why there are none."""

    device: Fingerprint
    signature: Signature
    choice: Choice
    status: str
    samples: tuple[float, ...] = ()
    error: str = ""
    kind: str = ""
    campaign: str = ""
    worker: str = ""
    created: float = field(default_factory=time.time)
    found: dict[str, Any] | None = field(default=None, hash=False)  # learnt while measuring (JSON object)

    def __post_init__(self) -> None:
        if self.found is not None and not isinstance(self.found, dict):
            raise LpdcError(f"a measurement's `found` must be a JSON object, got {type(self.found).__name__}")
        if self.status not in STATUSES:
            raise LpdcError(f"measurement status must be one of {STATUSES}, got {self.status!r}")
        if self.status == "ok" and not self.samples:
            raise LpdcError("an ok measurement needs at least one timing sample", where=self.choice.label)

    @property
    def repeats(self) -> int:
        return len(self.samples)

    @property
    def median_s(self) -> float | None:
        return _quantile(self.samples, 0.5)

    @property
    def spread_s(self) -> float | None:
        """Interquartile range of the samples (0 for fewer than two)."""
        if not self.samples:
            return None
        return _quantile(self.samples, 0.75) - _quantile(self.samples, 0.25)

    @property
    def min_s(self) -> float | None:
        return min(self.samples) if self.samples else None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.device.key, self.signature.key, self.choice.key)

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device.key, "signature": self.signature.key, "choice": self.choice.key,
                "kind": self.kind, "status": self.status, "repeats": self.repeats, "median_s": self.median_s,
                "spread_s": self.spread_s, "samples": list(self.samples), "error": self.error,
                "campaign": self.campaign, "worker": self.worker, "created": self.created, "found": self.found}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Measurement:
        try:
            samples, found = d.get("samples"), d.get("found")
            kind, error = str(d.get("kind") or ""), str(d.get("error") or "")
            if isinstance(found, str):
                found = json.loads(found)
            if found is None:  # a version-1 export: the trace note is in the error text
                found, error = _legacy_found(kind, error)
            return cls(Fingerprint.from_key(d["device"]), Signature.coerce(d["signature"]), Choice.coerce(d["choice"]),
                       str(d["status"]), tuple(float(s) for s in (samples or ())), error, kind,
                       str(d.get("campaign") or ""), str(d.get("worker") or ""),
                       float(d.get("created") or time.time()), found)
        except (KeyError, TypeError, ValueError) as e:
            raise LpdcError(f"malformed measurement record: {type(e).__name__}: {e}") from None


def _legacy_found(kind: str, error: str) -> tuple[dict[str, Any] | None, str]:
    """(found, error) of a version-1 row: a meta_schedule trace note moves out of the error text."""
    m = _LEGACY_NOTE.fullmatch(error) if kind == "meta_schedule" else None
    if m is None:
        return None, error
    return {"trace_sha256": m.group(1), "trials": int(m.group(2)), "trace_file": m.group(3)}, ""


def _found_text(found: dict[str, Any] | None) -> str | None:
    return None if found is None else json.dumps(found, sort_keys=True, separators=(",", ":"))


def _quantile(xs: Iterable[float], q: float) -> float | None:
    s = sorted(xs)
    if not s:
        return None
    pos = q * (len(s) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def _is_lock_error(e: sqlite3.OperationalError) -> bool:
    text = str(e).lower()
    return "locked" in text or "busy" in text


class Database:
    """An autotune database file (created on first use). Use as a context manager or `close()`."""

    def __init__(self, path: str | os.PathLike[str], busy_timeout_s: float = 30.0, retries: int = 20) -> None:
        self.path = Path(path)
        self.retries = retries
        self._lock = threading.RLock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Autocommit (isolation_level=None): each statement is its own transaction, so a row is
            # durable the moment `record` returns and no write lock is held between statements.
            self._conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None,
                                         check_same_thread=False)
        except (OSError, sqlite3.Error) as e:
            raise LpdcError(f"cannot open autotune database: {e}", where=str(self.path)) from None
        self._conn.row_factory = sqlite3.Row
        self._retry(lambda: self._setup(busy_timeout_s))

    def _setup(self, busy_timeout_s: float) -> None:
        c = self._conn
        c.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        mode = c.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise LpdcError(f"the database could not be switched to WAL mode (got {mode})", where=str(self.path))
        c.execute("PRAGMA synchronous = FULL")
        c.executescript(_SCHEMA)
        c.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
        if not self._has_found():
            self._migrate()

    def _has_found(self) -> bool:
        return any(r[1] == "found" for r in self._conn.execute("PRAGMA table_info(measurements)"))

    def _migrate(self) -> None:
        """Version 1 -> 2: add the `found` column and move the trace notes into it, in one transaction."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")  # the write lock first: another process may be migrating too
        try:
            if not self._has_found():
                c.execute("ALTER TABLE measurements ADD COLUMN found TEXT")
                rows = c.execute("SELECT id, error FROM measurements WHERE kind = 'meta_schedule' AND "
                                 "error LIKE 'meta_schedule trace sha256=%'").fetchall()
                for row_id, error in rows:
                    found, rest = _legacy_found("meta_schedule", error)
                    if found is not None:
                        c.execute("UPDATE measurements SET found = ?, error = ? WHERE id = ?",
                                  (_found_text(found), rest, row_id))
                c.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", (SCHEMA_VERSION,))
                log.info("migrated %s to autotune schema version %s", self.path, SCHEMA_VERSION)
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def _retry(self, fn: Callable[[], _T]) -> _T:
        """Run `fn`, retrying with jittered backoff while another process holds the lock."""
        delay = 0.01
        for attempt in range(self.retries + 1):
            try:
                with self._lock:
                    return fn()
            except sqlite3.OperationalError as e:
                if not _is_lock_error(e) or attempt == self.retries:
                    raise LpdcError(f"database error: {e}", where=str(self.path)) from None
                log.debug("database busy (%s), retry %d", e, attempt + 1)
            except sqlite3.DatabaseError as e:
                raise LpdcError(f"database error: {e}", where=str(self.path)) from None
            time.sleep(delay * (1 + random.random()))
            delay = min(delay * 2, 1.0)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- writing ---------------------------------------------------------------------------------
    def record(self, m: Measurement, replace_failed: bool = False) -> bool:
        """Store `m`, committed before returning. True if written; False if the key already had a row
        (any row, or with `replace_failed` an ok row)."""
        row = (m.device.key, m.signature.key, m.choice.key, m.signature.op, m.choice.primitive, m.kind, m.status,
               m.repeats, m.median_s, m.spread_s, m.min_s, json.dumps(list(m.samples)), m.error, m.campaign,
               m.worker, m.created, _found_text(m.found))
        cols = ", ".join(_COLUMNS)
        marks = ", ".join("?" * len(_COLUMNS))
        if replace_failed:
            updates = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[3:])
            sql = (f"INSERT INTO measurements ({cols}) VALUES ({marks}) ON CONFLICT (device, signature, choice) "
                   f"DO UPDATE SET {updates} WHERE measurements.status != 'ok'")
        else:
            sql = f"INSERT OR IGNORE INTO measurements ({cols}) VALUES ({marks})"
        return self._retry(lambda: self._conn.execute(sql, row).rowcount > 0)

    def record_many(self, ms: Iterable[Measurement], replace_failed: bool = False) -> int:
        return sum(self.record(m, replace_failed) for m in ms)

    # ---- reading ---------------------------------------------------------------------------------
    def _select(self, where: str = "", args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM measurements {where} ORDER BY id"
        return self._retry(lambda: self._conn.execute(sql, args).fetchall())

    def measurements(self, device: Fingerprint | None = None, status: str | None = None) -> list[Measurement]:
        """Every row (of one device / one status), oldest first."""
        clauses, args = [], []
        if device is not None:
            clauses.append("device = ?")
            args.append(device.key)
        if status is not None:
            clauses.append("status = ?")
            args.append(status)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        return [_row_to_measurement(r) for r in self._select(where, tuple(args))]

    def get(self, device: Fingerprint, signature: Signature, choice: Choice) -> Measurement | None:
        rows = self._select("WHERE device = ? AND signature = ? AND choice = ?",
                            (device.key, signature.key, choice.key))
        return _row_to_measurement(rows[0]) if rows else None

    def rows_for(self, device: Fingerprint, signature: Signature) -> list[Measurement]:
        """Every row of one layer on `device` (all its choices and kinds), oldest first."""
        return [_row_to_measurement(r) for r in self._select("WHERE device = ? AND signature = ?",
                                                             (device.key, signature.key))]

    def done_keys(self, device: Fingerprint, ok_only: bool = False) -> set[tuple[str, str]]:
        """(signature key, choice key) of every row of `device` (only ok rows with `ok_only`)."""
        sql = "SELECT signature, choice FROM measurements WHERE device = ?" + (" AND status = 'ok'" if ok_only else "")
        rows = self._retry(lambda: self._conn.execute(sql, (device.key,)).fetchall())
        return {(r[0], r[1]) for r in rows}

    def count(self, status: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM measurements" + (" WHERE status = ?" if status else "")
        return int(self._retry(lambda: self._conn.execute(sql, (status,) if status else ()).fetchone()[0]))

    def devices(self) -> list[Fingerprint]:
        rows = self._retry(lambda: self._conn.execute("SELECT DISTINCT device FROM measurements").fetchall())
        return [Fingerprint.from_key(r[0]) for r in rows]

    def integrity_check(self) -> str:
        """SQLite's own check: "ok" for an intact file."""
        return str(self._retry(lambda: self._conn.execute("PRAGMA integrity_check").fetchone()[0]))

    # ---- JSON lines ------------------------------------------------------------------------------
    def export_jsonl(self, dest: str | os.PathLike[str] | IO[str], device: Fingerprint | None = None) -> int:
        """Write every row (of `device`) as one JSON object per line; returns the row count."""
        rows = self.measurements(device)
        if isinstance(dest, (str, os.PathLike)):
            with open(dest, "w", encoding="utf-8") as f:
                return self.export_jsonl(f, device)
        for m in rows:
            dest.write(json.dumps(m.to_json(), sort_keys=True) + "\n")
        return len(rows)

    def import_jsonl(self, src: str | os.PathLike[str] | IO[str], replace_failed: bool = False) -> tuple[int, int]:
        """Insert the rows of a JSON-lines file; returns (inserted, already present)."""
        if isinstance(src, (str, os.PathLike)):
            try:
                with open(src, encoding="utf-8") as f:
                    return self.import_jsonl(f, replace_failed)
            except OSError as e:
                raise LpdcError(f"cannot read measurements: {e}", where=str(src)) from None
        inserted = present = 0
        for lineno, line in enumerate(src, 1):
            if not line.strip():
                continue
            try:
                m = Measurement.from_json(json.loads(line))
            except (json.JSONDecodeError, LpdcError) as e:
                raise LpdcError(f"line {lineno}: {e}", where=getattr(src, "name", None)) from None
            if self.record(m, replace_failed):
                inserted += 1
            else:
                present += 1
        return inserted, present


def _row_to_measurement(r: sqlite3.Row) -> Measurement:
    return Measurement(Fingerprint.from_key(r["device"]), Signature.coerce(r["signature"]),
                       Choice.coerce(r["choice"]), r["status"], tuple(json.loads(r["samples"] or "[]")),
                       r["error"], r["kind"], r["campaign"], r["worker"], r["created"],
                       json.loads(r["found"]) if r["found"] else None)


class DatabaseCostSource:
    """Measured costs for the selection pass: `lookup(signature, choice) -> seconds | None`.

    Plug-in: pass it as the cost source the select-primitives pass reads before its analytical
    model: `SelectConfig(source=DatabaseCostSource(db, device), costs="cache")`. A choice without
    a kernel config matches every config measured for it (the fastest is its cost, that config
    being the one a backend should use: `best_config`); an empty choice device matches any
    device. Failed and timed-out rows count as "no cost known".
    Rows are read once (`refresh()` re-reads), so lookups during a PBQP build are dictionary hits.
    """

    name = "measured"

    def __init__(self, db: Database | str | os.PathLike[str], device: Fingerprint, scale: float = 1.0,
                 statistic: str = "min") -> None:
        if statistic not in ("min", "median"):
            raise LpdcError(f"statistic must be 'min' or 'median', got {statistic!r}")
        self.db = db if isinstance(db, Database) else Database(db)
        self.device = device
        self.scale = scale  # multiply seconds by this (1e3 for milliseconds)
        # The fastest sample by default, as the selection pass's own micro-benchmark: on a shared
        # machine interference only ever adds time, so the minimum is the most repeatable estimate.
        self.statistic = statistic
        self._rows: dict[tuple[str, str], list[Measurement]] | None = None

    def _seconds(self, m: Measurement) -> float:
        value = m.min_s if self.statistic == "min" else m.median_s
        return float(value if value is not None else float("inf"))

    def refresh(self) -> None:
        rows: dict[tuple[str, str], list[Measurement]] = {}
        for m in self.db.measurements(self.device, status="ok"):
            rows.setdefault((m.signature.key, m.choice.primitive), []).append(m)
        self._rows = rows

    def _best(self, signature: Any, choice: Any) -> Measurement | None:
        if self._rows is None:
            self.refresh()
        assert self._rows is not None
        try:
            sig, ch = Signature.coerce(signature), Choice.coerce(choice)
        except LpdcError:
            return None  # a signature this database cannot hold has no measured cost
        best = None
        for m in self._rows.get((sig.key, ch.primitive), ()):
            c = m.choice
            if ch.layout and c.layout != ch.layout or ch.device and c.device != ch.device:
                continue
            if ch.split and c.split != ch.split or ch.config and c.config != ch.config:
                continue
            if best is None or self._seconds(m) < self._seconds(best):
                best = m
        return best

    @classmethod
    def for_host(cls, path: str | os.PathLike[str], target: str = "numpy") -> DatabaseCostSource:
        """The database's costs for this machine as it is configured now (BLAS threads, clock)."""
        return cls(Database(path), Fingerprint.host(target))

    def lookup(self, signature: Any, choice: Any) -> float | None:
        m = self._best(signature, choice)
        return None if m is None else self._seconds(m) * self.scale

    def store(self, signature: Any, choice: Any, seconds: float) -> None:
        """Keep a measurement the selection pass took itself (its micro-benchmark: one sample)."""
        m = Measurement(self.device, Signature.coerce(signature), Choice.coerce(choice, self.device.target), "ok",
                        (float(seconds) / self.scale,), kind="numpy", campaign="select-primitives",
                        worker=f"pid{os.getpid()}")
        if self.db.record(m) and self._rows is not None:
            self._rows.setdefault((m.signature.key, m.choice.primitive), []).append(m)

    def save(self) -> None:
        """Nothing to do: `store` commits each row at once (the selection pass calls this)."""

    def best(self, signature: Any, choice: Any) -> Measurement | None:
        """The row `lookup` prices (`choice`) by: its kind, config and `found` say what to build."""
        return self._best(signature, choice)

    def best_config(self, signature: Any, choice: Any) -> dict[str, Any] | None:
        m = self._best(signature, choice)
        return None if m is None else m.choice.config_dict()

    def describe(self, signature: Any, choice: Any) -> str | None:
        """`measured: median of 5, IQR 3%` for --explain, or None when nothing was measured."""
        m = self._best(signature, choice)
        if m is None or not m.median_s:
            return None
        return (f"measured: {self.statistic} of {m.repeats} = {self._seconds(m) * 1e3:.3f} ms "
                f"(median {m.median_s * 1e3:.3f} ms, IQR {100 * (m.spread_s or 0) / m.median_s:.0f}%)")

    def __iter__(self) -> Iterator[Measurement]:
        if self._rows is None:
            self.refresh()
        assert self._rows is not None
        return (m for ms in self._rows.values() for m in ms)
