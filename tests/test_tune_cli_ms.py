"""`lpdc tune --ms-trials`: meta_schedule rows in the campaign (with the tuned trace in the `found`
column, next to the best hand-scheduled row of the layer), resumable, refused where it cannot
apply; and a version-1 database (no `found` column) migrated with its rows kept."""

from __future__ import annotations

import hashlib
import io
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from lpdc.autotune.db import Database, Measurement
from lpdc.autotune.keys import Choice, Fingerprint, Signature, canonical
from lpdc.autotune.layers import heaviest_layers, ms_devices, ms_model_work
from lpdc.backends.numpy.primitives import ConvSpec
from lpdc.errors import LpdcError, LpdcTargetError
from lpdc.tools.cli import main

SHAPE = (1, 4, 8, 8)
W1 = np.random.default_rng(0).standard_normal((8, 4, 3, 3)).astype(np.float32)
W2 = np.random.default_rng(1).standard_normal((16, 8, 3, 3)).astype(np.float32)  # the heavier conv


def _model(tmp_path: Path) -> Path:
    """Two 3x3 convs (4 -> 8 -> 16 channels) on 8x8, saved to ONNX."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], name="c1"),
             helper.make_node("Relu", ["a"], ["r"], name="r1"),
             helper.make_node("Conv", ["r", "w2"], ["y"], pads=[1, 1, 1, 1], name="c2")]
    g = helper.make_graph(nodes, "twoconv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, SHAPE)],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                          initializer=[numpy_helper.from_array(W1, "w1"), numpy_helper.from_array(W2, "w2")])
    path = tmp_path / "twoconv.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_cli_meta_schedule_row_compared_and_not_remeasured(tmp_path, capsys) -> None:
    pytest.importorskip("tvm")
    model, db_path, plan = _model(tmp_path), tmp_path / "tune.db", tmp_path / "plan.json"
    argv = ["--quiet", "tune", str(model), "--target", "x86", "--trials", "1", "--ms-trials", "2", "--ms-layers", "1",
            "--repeats", "3", "--db", str(db_path), "-o", str(plan)]
    assert main([*argv, "--json"]) == 0, capsys.readouterr().err
    out = json.loads(capsys.readouterr().out)
    assert out["campaign"]["outcomes"] == {"ok": 3}  # one hand-scheduled config per conv + one search
    (row,) = out["meta_schedule"]
    heavy = Signature.from_spec(ConvSpec(1, 8, 8, 8, 16, 3, 3, pad=(1, 1, 1, 1)))
    assert row["signature"] == heavy.as_dict() and row["trials"] == 2 and row["status"] == "ok"
    assert row["tvm_best"]["config"]["schedule"] == "s_tir"
    assert row["speedup"] == pytest.approx(row["tvm_best"]["median_s"] / row["median_s"])

    with Database(db_path) as db:
        (m,) = [r for r in db.measurements() if r.kind == "meta_schedule"]
        assert m.signature == heavy and m.error == "" and m.found == row["found"]
    found = m.found
    assert set(found) == {"trace_sha256", "trace_file", "trials"} and found["trials"] == 2
    trace = db_path.with_suffix(".kernels") / found["trace_file"]
    meta = json.loads(trace.read_text())
    assert found["trace_sha256"] == meta["sha256"] == hashlib.sha256(canonical(meta["trace"]).encode()).hexdigest()

    # The kernel the row timed computes the heavier conv (x: the first conv's output shape).
    import tvm
    from lpdc.autotune.tvm_kind import FUNC
    from lpdc.backends.numpy.im2col import conv2d_im2col

    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 8, 8, 8)).astype(np.float32)
    y = tvm.runtime.empty((1, 16, 8, 8), "float32", tvm.cpu())
    tvm.runtime.load_module(str(trace.with_suffix(".so")))[FUNC](tvm.runtime.tensor(x), tvm.runtime.tensor(W2), y)
    np.testing.assert_allclose(y.numpy(), conv2d_im2col(x, W2, (1, 1), (1, 1, 1, 1), (1, 1), 1), rtol=1e-5, atol=1e-4)

    # Rerun: everything is in the database; nothing is measured or tuned; the text report compares.
    stamp = trace.stat().st_mtime_ns
    assert main([*argv, "--explain"]) == 0
    text = capsys.readouterr().out
    assert "3 already in" in text and "measured 0 (nothing new)" in text
    assert "meta_schedule" in text and "best tvm s_tir[" in text and ("x faster" in text or "x slower" in text)
    assert f"sha256={found['trace_sha256']}" in text
    with Database(db_path) as db:
        assert db.count() == 3 and trace.stat().st_mtime_ns == stamp


@pytest.mark.parametrize("extra, message", [
    (["--target", "numpy", "--ms-trials", "2"], "no TVM device"),
    (["--target", "x86", "--ms-trials", "2", "--tracker", "127.0.0.1:9", "--key", "b"], "this host only"),
    (["--target", "a72", "--ms-trials", "2"], "cross compiler"),
    (["--target", "x86", "--ms-layers", "2"], "--ms-layers needs --ms-trials"),
    (["--target", "x86", "--ms-trials", "-1"], "--ms-trials must be >= 0"),
    (["--target", "x86", "--ms-trials", "2", "--ms-layers", "0"], "--ms-layers must be >= 1"),
])
def test_cli_refuses_meta_schedule_where_it_cannot_apply(tmp_path, capsys, extra, message) -> None:
    db = tmp_path / "never.db"
    assert main(["tune", "zoo:tiny_cnn", "--db", str(db), "-o", str(tmp_path / "p.json"), *extra]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lpdc: error:") and message in err and "Traceback" not in err
    assert not db.exists()  # refused before anything was measured


def test_library_refusals_and_heaviest_layers(tmp_path) -> None:
    from lpdc.api import load
    from lpdc.autotune.layers import optimise

    g = optimise(load(str(_model(tmp_path))))
    with pytest.raises(LpdcTargetError, match="no TVM device"):
        ms_model_work([g], "numpy", 1, 2)
    with pytest.raises(LpdcTargetError, match="cross compiler"):
        ms_devices("a53")
    with pytest.raises(LpdcError, match="trials >= 1"):
        ms_model_work([g], "x86", 1, 0)
    (first, second) = heaviest_layers([g, g], 5)  # one entry per distinct signature, across graphs
    assert first[1] == 2.0 * 64 * 16 * 8 * 9 and second[1] == 2.0 * 64 * 8 * 4 * 9
    assert len(first[2]) == 2  # the same node in both graphs
    (w,) = ms_model_work([g], "x86", 1, 2)
    assert w.signature == first[0] and w.choice.config_dict() == {"schedule": "meta_schedule", "trials": 2, "seed": 0}


OLD_SCHEMA = """
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
    UNIQUE (device, signature, choice)
);
CREATE INDEX IF NOT EXISTS measurements_lookup ON measurements (device, signature, primitive);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('schema_version', '1');
"""
OLD_INSERT = ("INSERT INTO measurements (device, signature, choice, op, primitive, kind, status, repeats, median_s, "
              "spread_s, min_s, samples, error, campaign, worker, created) "
              "VALUES (?, ?, ?, 'conv', ?, ?, ?, 1, ?, 0, ?, ?, ?, 'old', 'w', 1.0)")


def test_old_schema_database_is_migrated_rows_kept(tmp_path) -> None:
    dev = Fingerprint("x86", "local", "test-cpu")
    sig = Signature.from_spec(ConvSpec(1, 8, 8, 8, 16, 3, 3, pad=(1, 1, 1, 1)))
    tvm_ch = Choice.make("tvm_conv2d", "NCHW", "x86", config={"schedule": "s_tir", "tile_o": 8, "tile_w": 8})
    ms_ch = Choice.make("tvm_conv2d", "NCHW", "x86", config={"schedule": "meta_schedule", "trials": 2, "seed": 0})
    digest = "ab" * 32
    note = f"meta_schedule trace sha256={digest} (2 trials; trace in ms_0123.json)"
    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(OLD_SCHEMA)
    for ch, kind, t, err in ((tvm_ch, "tvm", 2e-3, ""), (ms_ch, "meta_schedule", 1e-3, note)):
        con.execute(OLD_INSERT, (dev.key, sig.key, ch.key, ch.primitive, kind, "ok", t, t, json.dumps([t]), err))
    con.commit()
    con.close()

    with Database(path) as db:
        rows = {m.kind: m for m in db.measurements()}
        assert set(rows) == {"tvm", "meta_schedule"} and rows["tvm"].median_s == 2e-3 and rows["tvm"].found is None
        assert rows["meta_schedule"].found == {"trace_sha256": digest, "trials": 2, "trace_file": "ms_0123.json"}
        assert rows["meta_schedule"].error == "" and rows["meta_schedule"].median_s == 1e-3
        assert db._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0] == "2"
        assert db.integrity_check() == "ok"
        # The new column is written and read; version-1 code's INSERT (no `found`) still works.
        fc = Choice.make("tvm_conv2d", "NCHW", "x86", config={"schedule": "default"})
        assert db.record(Measurement(dev, sig, fc, "ok", (3e-3,), kind="tvm", found={"note": [1, 2]}))
        assert db.get(dev, sig, fc).found == {"note": [1, 2]}
        dc = Choice.make("tvm_conv2d", "NCHW", "x86", config={"schedule": "s_tir", "tile_o": 4, "tile_w": 8})
        db._conn.execute(OLD_INSERT, (dev.key, sig.key, dc.key, dc.primitive, "tvm", "ok", 4e-3, 4e-3, "[0.004]", ""))
        assert db.get(dev, sig, dc).found is None and db.count() == 4
        buf = io.StringIO()
        assert db.export_jsonl(buf) == 4
    with Database(path) as db:  # a second open migrates nothing and loses nothing
        assert db.count() == 4 and db.get(dev, sig, ms_ch).found["trace_sha256"] == digest

    lines = buf.getvalue().splitlines()
    assert json.loads(lines[1])["found"]["trace_file"] == "ms_0123.json"
    legacy = json.loads(lines[1])  # a version-1 export: no `found`, the note in `error`
    legacy.pop("found")
    legacy["error"] = note
    with Database(tmp_path / "new.db") as db:
        assert db.import_jsonl(io.StringIO(buf.getvalue())) == (4, 0)
        assert {m.choice.key: m.found for m in db.measurements()}[fc.key] == {"note": [1, 2]}
    with Database(tmp_path / "legacy.db") as db:
        assert db.import_jsonl(io.StringIO(json.dumps(legacy) + "\n")) == (1, 0)
        (m,) = db.measurements()
        assert m.found == {"trace_sha256": digest, "trials": 2, "trace_file": "ms_0123.json"} and m.error == ""
