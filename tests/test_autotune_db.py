"""The autotune database: keys, durability rules, JSON lines, concurrent writers, and the cost
source the selection pass reads (measured costs first, the analytical model elsewhere)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import lpdc
import numpy as np
import pytest
from lpdc.autotune.db import Database, DatabaseCostSource, Measurement
from lpdc.autotune.keys import Choice, Fingerprint, Signature
from lpdc.backends.numpy.primitives import ConvSpec
from lpdc.errors import LpdcError
from lpdc.tools.zoo import build

DEV = Fingerprint("numpy", "local", "test-cpu", "", 1)


def conv_sig(c: int = 8) -> Signature:
    return Signature.from_spec(ConvSpec(1, c, 8, 8, 8, 3, 3, (1, 1), (1, 1, 1, 1)))


def meas(sig: Signature, choice: Choice, samples: tuple[float, ...] = (1e-3,), status: str = "ok",
         device: Fingerprint = DEV, error: str = "") -> Measurement:
    return Measurement(device, sig, choice, status, samples if status == "ok" else (), error, "numpy", "test")


def test_keys_round_trip_and_select_labels() -> None:
    spec = ConvSpec(1, 3, 8, 8, 4, 3, 3, (2, 2), (1, 1, 1, 1), group=1)
    sig = Signature.from_spec(spec)
    assert Signature.coerce(sig.key) == sig and sig.to_spec() == spec
    assert json.loads(sig.key)["stride"] == [2, 2]
    text = 'conv af32[1,3,8,8] cf32[4,3,3,3] {"group":1}'
    assert Signature.coerce(text).key == text and Signature.coerce(text).op == "conv"
    assert Choice.coerce("winograd_2x2@NCHW").layout == "NCHW"
    assert Choice.coerce("-@NHWC").primitive == "" and Choice.coerce("-@NHWC").label == "-@NHWC"
    conv = Choice.coerce("NCHW->NHWC")
    assert (conv.primitive, conv.layout, conv.label) == ("layout_convert", "NCHW->NHWC", "NCHW->NHWC")
    tuned = Choice.make("tvm_conv2d", "NCHW", "x86", config={"tile_o": 8, "schedule": "s_tir"})
    assert Choice.coerce(tuned.key) == tuned and tuned.config_dict() == {"schedule": "s_tir", "tile_o": 8}
    assert Fingerprint.from_key(DEV.key) == DEV


def test_statistics_and_validation() -> None:
    m = meas(conv_sig(), Choice.coerce("im2col@NCHW"), (4.0, 1.0, 100.0, 2.0, 3.0))
    assert (m.median_s, m.min_s, m.repeats) == (3.0, 1.0, 5)
    assert m.spread_s == pytest.approx(2.0)  # IQR: q75 = 4, q25 = 2
    with pytest.raises(LpdcError):
        meas(conv_sig(), Choice.coerce("im2col@NCHW"), status="crashed")
    with pytest.raises(LpdcError):
        Measurement(DEV, conv_sig(), Choice.coerce("im2col@NCHW"), "ok", ())


def test_first_row_wins_and_failed_rows_are_retryable(tmp_path) -> None:
    with Database(tmp_path / "t.db") as db:
        assert db._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        sig, ch = conv_sig(), Choice.coerce("im2col@NCHW", "numpy")
        assert db.record(meas(sig, ch, (2e-3,)))
        assert not db.record(meas(sig, ch, (9e-3,)))  # INSERT OR IGNORE: never measured twice
        assert not db.record(meas(sig, ch, (9e-3,)), replace_failed=True)  # an ok row is kept
        assert db.get(DEV, sig, ch).median_s == 2e-3
        bad = Choice.coerce("fft@NCHW", "numpy")
        assert db.record(meas(sig, bad, status="timeout", error="no result within 1 s"))
        assert db.get(DEV, sig, bad).error == "no result within 1 s"
        assert db.record(meas(sig, bad, (5e-3,)), replace_failed=True)  # a retry replaces a failure
        assert db.get(DEV, sig, bad).status == "ok" and db.count() == 2
        assert db.done_keys(DEV) == {(sig.key, ch.key), (sig.key, bad.key)}
        other = Fingerprint("numpy", "local", "another-cpu")
        assert db.done_keys(other) == set()  # costs never leak between devices


def test_jsonl_export_import(tmp_path) -> None:
    with Database(tmp_path / "a.db") as a:
        for i, name in enumerate(("im2col", "im2row", "direct")):
            a.record(meas(conv_sig(), Choice.coerce(f"{name}@NCHW", "numpy"), ((i + 1) * 1e-3, 2e-3)))
        a.record(meas(conv_sig(16), Choice.coerce("fft@NCHW", "numpy"), status="failed", error="boom"))
        buf = io.StringIO()
        assert a.export_jsonl(buf) == 4
    lines = buf.getvalue().splitlines()
    assert len(lines) == 4 and json.loads(lines[3])["error"] == "boom"
    with Database(tmp_path / "b.db") as b:
        assert b.import_jsonl(io.StringIO(buf.getvalue())) == (4, 0)
        assert b.import_jsonl(io.StringIO(buf.getvalue())) == (0, 4)
        got = {(m.choice.primitive, m.status, m.samples) for m in b.measurements()}
        assert got == {("im2col", "ok", (1e-3, 2e-3)), ("im2row", "ok", (2e-3, 2e-3)),
                       ("direct", "ok", (3e-3, 2e-3)), ("fft", "failed", ())}
        with pytest.raises(LpdcError, match="line 2"):
            b.import_jsonl(io.StringIO(lines[0] + "\n{not json\n"))


WRITER = textwrap.dedent("""
    import sys
    from lpdc.autotune.db import Database, Measurement
    from lpdc.autotune.keys import Choice, Fingerprint, Signature
    db = Database(sys.argv[1])
    start, stop = int(sys.argv[2]), int(sys.argv[3])
    dev = Fingerprint("numpy", "local", "test-cpu", "", 1)
    new = 0
    for i in range(start, stop):
        m = Measurement(dev, Signature.of("conv", i=i), Choice.make("im2col", "NCHW", "numpy"), "ok", (i * 1e-6,),
                        campaign=sys.argv[4])
        new += db.record(m)
    print(new)
""")


def test_two_writer_processes(tmp_path) -> None:
    path = tmp_path / "shared.db"
    Database(path).close()
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(a), str(b), name],
                              stdout=subprocess.PIPE, text=True)
             for a, b, name in ((0, 300, "A"), (150, 450, "B"))]  # 150 keys written by both
    inserted = [int(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    with Database(path) as db:
        assert db.integrity_check() == "ok"
        rows = db.measurements()
        assert len(rows) == 450 and sum(inserted) == 450  # every key once, none lost, none twice
        assert sorted(m.signature.get("i") for m in rows) == list(range(450))
        assert all(m.median_s == pytest.approx(m.signature.get("i") * 1e-6) for m in rows)
        assert {m.campaign for m in rows} == {"A", "B"}


def test_cost_source_lookup(tmp_path) -> None:
    with Database(tmp_path / "c.db") as db:
        sig = conv_sig()
        db.record(meas(sig, Choice.coerce("im2col@NCHW", "numpy"), (3e-3, 1e-3, 2e-3)))
        db.record(meas(sig, Choice.coerce("fft@NCHW", "numpy"), status="timeout"))
        for tile, t in ((4, 5e-3), (8, 2e-3)):
            db.record(meas(sig, Choice.make("tvm_conv2d", "NCHW", "x86", config={"tile_o": tile}), (t,)))
        src = DatabaseCostSource(db, DEV)
        assert src.lookup(sig.key, "im2col@NCHW") == 1e-3  # the fastest sample
        assert DatabaseCostSource(db, DEV, statistic="median").lookup(sig, "im2col@NCHW") == 2e-3
        assert src.lookup(sig, "fft@NCHW") is None  # a timed-out row is no cost
        assert src.lookup(sig, "winograd_2x2@NCHW") is None
        assert src.lookup(sig, Choice.make("tvm_conv2d", "NCHW")) == 2e-3  # best config wins
        assert src.best_config(sig, Choice.make("tvm_conv2d", "NCHW")) == {"tile_o": 8}
        assert src.lookup(sig, Choice.make("tvm_conv2d", "NCHW", config={"tile_o": 4})) == 5e-3
        assert DatabaseCostSource(db, Fingerprint("numpy")).lookup(sig, "im2col@NCHW") is None
        assert "min of 3" in src.describe(sig, "im2col@NCHW")


def test_selection_reads_measured_costs_first(tmp_path) -> None:
    """Rows for one layer steer the plan there; layers without rows keep the model's costs."""
    from lpdc.autotune.campaign import explain_origins, solve_plan
    from lpdc.autotune.layers import numpy_work, optimise

    g = optimise(build("tiny_cnn"))
    work = [w for w in numpy_work(g) if w.signature.op == "conv" and '"group":16' not in w.signature.key]
    first = work[0].signature.key  # conv1: measure all its choices; make direct by far the fastest
    with Database(tmp_path / "s.db") as db:
        for w in work:
            if w.signature.key == first:
                t = 1e-6 if w.choice.primitive == "direct" else 1.0
                db.record(meas(w.signature, w.choice, (t,)))
        _, plan = solve_plan(g, db, DEV)
        layers = {layer.name: layer for layer in plan.layers}
        assert layers["conv1"].choice == "direct@NCHW" and layers["conv1"].origin == "cached"
        assert layers["conv4"].origin == "model" and plan.origins["model"] > 0
        text = explain_origins(g, plan, DatabaseCostSource(db, DEV))
        assert "conv1" in text and "measured: min of 1" in text and "analytical model" in text


def test_selection_pass_keeps_its_benchmarks_in_the_database(tmp_path) -> None:
    """select-primitives with an SQLite cache path measures into the autotune database, then reads it."""
    from lpdc.passes.select.select_primitives import select_config

    g, path, plans = build("tiny_cnn"), tmp_path / "sel.db", []
    with select_config(cache_path=path, costs="measure", on_plan=plans.append):
        lpdc.compile(g, opt_level=3)
    with Database(path) as db:
        rows = db.measurements()
        assert rows and all(m.campaign == "select-primitives" and m.status == "ok" for m in rows)
        assert {m.device for m in rows} == {Fingerprint.host("numpy")}
    with select_config(cache_path=path, costs="cache", on_plan=plans.append):
        exe = lpdc.compile(g, opt_level=3)
    assert plans[1].origins.get("cached", 0) > 0 and plans[1].choices == plans[0].choices
    x = np.random.default_rng(0).standard_normal(g.inputs[0].type.shape).astype(np.float32)
    ref = lpdc.compile(g, opt_level=0).run({g.inputs[0].name: x})
    got = exe.run({g.inputs[0].name: x})
    for k, v in ref.items():
        assert np.max(np.abs(got[k] - v)) <= 1e-4 * np.max(np.abs(v)) + 1e-6
