"""Campaigns on "boards" through a real TVM RPC tracker: a tracker and two servers on 127.0.0.1
(random free ports, subprocesses in their own process groups, killed with them at teardown)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from lpdc.autotune.campaign import Campaign, CampaignOptions
from lpdc.autotune.db import Database
from lpdc.autotune.layers import model_work
from lpdc.autotune.rpc import (
    RPCRunner,
    check_bind,
    group_alive,
    start_local_cluster,
    start_tracker,
    tracker_servers,
)
from lpdc.errors import LpdcError
from lpdc.tools.builder import NetBuilder

KEY = "lpdc-test-board"


def tiny_net():
    """Two small convs and a classifier: TVM compiles each kernel in a fraction of a second."""
    b = NetBuilder("tiny_rpc", (1, 4, 8, 8), seed=1)
    x = b.act(b.conv(b.x, 8, 3, pad=1))
    x = b.act(b.conv(x, 8, 3, stride=2, pad=1))
    x = b.g.op("flatten", b.g.op("global_avg_pool", x, name="gap"), name="flat")
    return b.finish(b.fc(x, 4))


@pytest.fixture(scope="module")
def cluster():
    c = start_local_cluster(KEY, servers=2)
    yield c
    c.stop()
    assert not any(group_alive(p.pid) for p in [c.tracker, *c.servers]), "RPC processes left behind"


def test_campaign_spreads_over_both_servers(cluster, tmp_path) -> None:
    assert tracker_servers(*cluster.address, KEY) == 2
    work = model_work([tiny_net()], "x86", trials=2)  # 2 convs + 1 dense, 2 kernel configs each
    assert len(work) == 6
    runner = RPCRunner(cluster.address, KEY, "x86", device_model="test-board", cache_dir=str(tmp_path / "k"))
    with Database(tmp_path / "rpc.db") as db:
        report = Campaign(db, runner, CampaignOptions(repeats=3, min_repeat_ms=5, timeout_s=30)).run(work)
        assert report.outcomes == {"ok": 6} and report.remaining == 0
        rows = db.measurements()
        assert len(rows) == 6 and all(m.status == "ok" and 0 < m.median_s < 0.05 for m in rows)
        assert all(m.device.board == KEY and m.device.cpu == "test-board" for m in rows)
        servers = {m.worker.split("@")[1] for m in rows}
        ports = {f"127.0.0.1:{p.port}" for p in cluster.servers}
        assert servers == ports, "both boards measured"
        # rerun: everything is in the database already, nothing is measured again
        again = Campaign(db, runner).run(work)
        assert again.already == 6 and again.measured == 0 and db.count() == 6


def test_cli_tune_through_tracker(cluster, tmp_path) -> None:
    db, plan = tmp_path / "cli.db", tmp_path / "plan.json"
    host, port = cluster.address
    cmd = [sys.executable, "-m", "lpdc.tools.cli", "--quiet", "tune", "zoo:tiny_cnn", "--target", "x86",
           "--tracker", f"{host}:{port}", "--key", KEY, "--trials", "1", "--db", str(db), "-o", str(plan), "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    report = json.loads(out.stdout)
    assert report["campaign"]["outcomes"] == {"ok": 5}  # 4 convs + 1 dense, one config each
    layers = json.loads(plan.read_text())["plans"][0]["layers"]
    assert len(layers) == 5 and all(layer["origin"] == "measured" and layer["seconds"] > 0 for layer in layers)


def test_endpoints_bind_to_loopback_unless_allowed() -> None:
    check_bind("127.0.0.1", False)
    check_bind("localhost", False)
    check_bind("0.0.0.0", True)
    with pytest.raises(LpdcError, match="allow-remote"):
        start_tracker("0.0.0.0")
    out = subprocess.run([sys.executable, "-m", "lpdc.tools.cli", "rpc", "server", "--host", "0.0.0.0",
                          "--tracker", "127.0.0.1:9", "--key", "k"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "--allow-remote" in out.stderr
