"""Nothing paid for is lost: a campaign killed with SIGKILL and restarted, a board dying mid-campaign,
a kernel that hangs or crashes, and two campaigns writing one database at once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from lpdc.autotune.campaign import Campaign, CampaignOptions
from lpdc.autotune.db import Database
from lpdc.autotune.keys import Choice, Signature
from lpdc.autotune.layers import Work, model_work, optimise
from lpdc.autotune.measure import LocalRunner
from lpdc.autotune.rpc import RPCRunner, start_local_cluster
from lpdc.backends.numpy.primitives import ConvSpec
from lpdc.tools.builder import NetBuilder
from lpdc.tools.zoo import build

CLI = [sys.executable, "-m", "lpdc.tools.cli", "--quiet", "tune"]


def _rows(path: Path) -> dict[tuple[str, str], tuple[float, tuple[float, ...], str, str]]:
    with Database(path) as db:
        assert db.integrity_check() == "ok"
        return {(m.signature.key, m.choice.key): (m.created, m.samples, m.campaign, m.status)
                for m in db.measurements()}


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                out.append(int(entry.name))
    return out


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def test_kill9_and_restart_loses_and_repeats_nothing(tmp_path) -> None:
    db, total = tmp_path / "k.db", len(model_work([optimise(build("tiny_cnn"))]))
    cmd = [*CLI, "zoo:tiny_cnn", "--db", str(db), "-o", str(tmp_path / "plan.json"), "--json",
           "--repeats", "3", "--min-repeat-ms", "25"]  # about 0.1 s per measurement
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while (not db.exists() or len(_rows(db)) < total // 3) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            time.sleep(0.05)
        workers = _children(proc.pid)
        os.kill(proc.pid, signal.SIGKILL)  # the campaign alone: its worker must die with it
        proc.wait()
        deadline = time.monotonic() + 10
        while any(_running(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert workers and not any(_running(w) for w in workers), "measurement worker outlived its campaign"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    before = _rows(db)
    assert 0 < len(before) < total
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)["campaign"]
    after = _rows(db)
    assert len(after) == total and all(v[3] == "ok" for v in after.values())
    assert {k: after[k] for k in before} == before, "a measurement of the killed campaign changed or vanished"
    assert report["already"] == len(before) and report["measured"] == total - len(before)  # none repeated
    assert len({v[2] for v in after.values()}) == 2


PLUGIN = textwrap.dedent('''
    """Fault-injection primitives: imported by measurement workers only (--plugin)."""
    import os
    import signal
    import time

    from lpdc.backends.numpy.primitives import Primitive, register

    def _hang(x, w, spec):
        time.sleep(3600)

    def _crash(x, w, spec):
        os.kill(os.getpid(), signal.SIGSEGV)

    register(Primitive("hang_test", "conv", "test", "NCHW", "NCHW", applies=lambda s: True, run=_hang))
    register(Primitive("crash_test", "conv", "test", "NCHW", "NCHW", applies=lambda s: True, run=_crash))
''')


def test_hung_and_crashing_kernels_are_recorded_and_skipped(tmp_path, monkeypatch) -> None:
    (tmp_path / "lpdc_fault_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))  # the workers inherit the path
    sig = Signature.from_spec(ConvSpec(1, 4, 8, 8, 4, 3, 3, (1, 1), (1, 1, 1, 1)))
    names = [("im2col", "NCHW"), ("hang_test", "NCHW"), ("im2row", "NHWC"), ("crash_test", "NCHW"), ("direct", "NCHW")]
    work = [Work("numpy", sig, Choice.make(n, lay, "numpy")) for n, lay in names]
    limit = 1.5
    with Database(tmp_path / "h.db") as db:
        t0 = time.monotonic()
        report = Campaign(db, LocalRunner(plugins=["lpdc_fault_plugin"]), CampaignOptions(timeout_s=limit)).run(work)
        elapsed = time.monotonic() - t0
        rows = {m.choice.primitive: m for m in db.measurements()}
    assert report.outcomes == {"ok": 3, "timeout": 1, "failed": 1}
    assert rows["hang_test"].status == "timeout" and f"within {limit:g} s" in rows["hang_test"].error
    assert rows["crash_test"].status == "failed" and "signal 11" in rows["crash_test"].error
    assert all(rows[n].status == "ok" and rows[n].median_s > 0 for n in ("im2col", "im2row", "direct"))
    assert rows["direct"].created > rows["crash_test"].created > rows["hang_test"].created  # it went on
    waited = rows["hang_test"].created - rows["im2col"].created
    assert limit <= waited <= limit + 5  # recorded at its limit (plus a worker restart), not after an hour
    assert elapsed < limit + 30


def test_budget_stops_handing_out_work_and_a_rerun_continues(tmp_path) -> None:
    sig = Signature.from_spec(ConvSpec(1, 4, 8, 8, 4, 3, 3, (1, 1), (1, 1, 1, 1)))
    work = [Work("numpy", sig, Choice.make(n, lay, "numpy")) for n, lay in (("im2col", "NCHW"), ("im2row", "NHWC"))]
    with Database(tmp_path / "b.db") as db:
        first = Campaign(db, LocalRunner(), CampaignOptions(budget_s=0.0)).run(work)
        assert first.stopped_by_budget and first.measured == 0 and first.remaining == 2 and db.count() == 0
        second = Campaign(db, LocalRunner()).run(work)
        assert second.outcomes == {"ok": 2} and db.count("ok") == 2


def tiny_net():
    b = NetBuilder("tiny_faults", (1, 4, 8, 8), seed=2)
    x = b.act(b.conv(b.x, 8, 3, pad=1))
    x = b.act(b.conv(x, 8, 3, pad=1))
    x = b.act(b.conv(x, 8, 1))
    return b.finish(x)


def _sessions(server_pid: int) -> set[int]:
    """The session processes of an RPC server: its listener (a popen_worker child) forks one per
    client session."""
    return {p for listener in _children(server_pid) for p in _children(listener) if _running(p)}


def test_board_dies_mid_campaign(tmp_path, caplog) -> None:
    cluster = start_local_cluster("lpdc-faults", servers=2)
    doomed, survivor = cluster.servers
    try:
        work = model_work([tiny_net()], "x86", trials=2)  # 3 convs x 2 kernel configs
        runner = RPCRunner(cluster.address, "lpdc-faults", "x86", cache_dir=str(tmp_path / "k"))
        db = Database(tmp_path / "b.db")
        result = {}
        options = CampaignOptions(repeats=4, min_repeat_ms=250, timeout_s=30)  # ~1 s on the board
        thread = threading.Thread(target=lambda: result.setdefault("r", Campaign(db, runner, options).run(work)))
        thread.start()
        with Database(tmp_path / "b.db") as watch:  # let it measure a little
            while watch.count() < 2 and thread.is_alive():
                time.sleep(0.02)
        old = _sessions(doomed.pid)
        while not _sessions(doomed.pid) - old and thread.is_alive():  # a new session starts on the board
            time.sleep(0.01)
        time.sleep(0.4)  # upload and load take ~0.1 s: now it is timing the kernel
        doomed.stop()
        killed_at = time.time()
        thread.join(timeout=180)
        assert not thread.is_alive()
        report, rows = result["r"], db.measurements()
        db.close()
    finally:
        cluster.stop()
    assert report.outcomes == {"ok": len(work)} and report.remaining == 0  # finished on the other board
    assert any("session lost" in r.getMessage() for r in caplog.records)  # the interrupted one was retried
    late = {m.worker.split("@")[-1] for m in rows if m.created > killed_at + 1.0}
    assert late <= {f"127.0.0.1:{survivor.port}"}
    assert f"127.0.0.1:{doomed.port}" in {m.worker.split("@")[-1] for m in rows}  # it had measured before


def test_two_campaigns_share_one_database(tmp_path) -> None:
    db = tmp_path / "shared.db"
    models = (["zoo:tiny_cnn"], ["zoo:tiny_cnn", "zoo:lenet"])
    procs = [subprocess.Popen([*CLI, *m, "--db", str(db), "-o", str(tmp_path / f"p{i}.json"), "--json",
                               "--min-repeat-ms", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i, m in enumerate(models)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-1500:] for o in outs]
    reports = [json.loads(o[0])["campaign"] for o in outs]
    needed = {w.key for w in model_work([optimise(build("tiny_cnn")), optimise(build("lenet"))])}
    rows = _rows(db)  # integrity checked inside
    assert set(rows) == needed and all(v[3] == "ok" for v in rows.values())  # none lost, one row each
    by_campaign = {}
    for v in rows.values():
        by_campaign[v[2]] = by_campaign.get(v[2], 0) + 1
    assert sum(by_campaign.values()) == len(needed) and len(by_campaign) <= 2
    # a campaign's rows are at most what it measured (a racing duplicate is ignored, not stored twice)
    assert sum(r["measured"] for r in reports) >= len(needed) - reports[1]["already"]
    assert reports[1]["total"] == len(needed) and reports[0]["total"] < len(needed)


class _FakeWorker:
    """Stands in for a worker process: answers tasks from a script of statuses."""

    def __init__(self, name: str, script: list[str]) -> None:
        self.name, self.script, self.seen = name, script, []

    def run(self, task, extra, setup_timeout_s):
        from lpdc.autotune.measure import Outcome

        self.seen.append(task.choice.primitive)
        status = self.script.pop(0) if self.script else "ok"
        if status == "lost":  # the board died under this measurement
            return Outcome(task, "failed", error="session lost", worker=self.name, retry=True)
        return Outcome(task, status, [1e-3] if status == "ok" else [], worker=self.name)

    def close(self) -> None:
        pass

    def kill(self) -> None:
        pass


def _fake_run(workers, names):
    from lpdc.autotune.keys import Fingerprint
    from lpdc.autotune.measure import Runner, Task

    class FakeRunner(Runner):
        fingerprint = Fingerprint("numpy")

        def workers(self):
            return workers

    sig = Signature.of("conv", i=0)
    tasks = [Task("numpy", sig, Choice.make(n)) for n in names]
    outcomes = []
    left = FakeRunner().run(tasks, outcomes.append)
    return outcomes, left


def test_runner_retries_lost_sessions_then_records_and_retires_idle_workers() -> None:
    # a session lost once is retried (elsewhere); lost twice, the measurement is recorded as failed
    outs, left = _fake_run([_FakeWorker("w0", ["lost", "lost"])], ["a"])
    assert [(o.status, o.attempts) for o in outs] == [("failed", 2)] and not left
    outs, left = _fake_run([_FakeWorker("w0", ["lost"]), _FakeWorker("w1", [])], ["a", "b", "c"])
    assert sorted(o.task.choice.primitive for o in outs) == ["a", "b", "c"] and all(o.status == "ok" for o in outs)
    # a worker that cannot get a session three times retires; its task is left for a later run, unrecorded
    outs, left = _fake_run([_FakeWorker("w0", ["unavailable"] * 3)], ["a", "b"])
    assert outs == [] and sorted(t.choice.primitive for t in left) == ["a", "b"]
    idle, busy = _FakeWorker("w0", ["unavailable"] * 3), _FakeWorker("w1", [])
    outs, left = _fake_run([idle, busy], ["a", "b", "c", "d"])
    assert len(outs) == 4 and not left and len(busy.seen) >= 1  # the other worker finished the campaign
