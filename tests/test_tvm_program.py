"""The TVM executable's static program (program.py), concat elimination (concat_inplace.py), stem
convs that read NCHW graph inputs, and the rows-outer conv loop order: all against the NumPy
reference, and the static runner against the general one (the memory-planned build runs that)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytest.importorskip("tvm")

import lpdc  # noqa: E402
from lpdc.backends.tvm import compile_tvm  # noqa: E402
from lpdc.ir import Graph  # noqa: E402
from lpdc.tools import zoo  # noqa: E402
from lpdc.tools.builder import NetBuilder  # noqa: E402
from test_tvm_x86 import at_resolution  # noqa: E402


def feeds_for(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}


def assert_close(got: dict[str, np.ndarray], ref: dict[str, np.ndarray]) -> None:
    assert got.keys() == ref.keys()
    for k, r in ref.items():
        assert got[k].shape == r.shape
        np.testing.assert_allclose(got[k], r, rtol=0, atol=1e-4 * float(np.abs(r).max()) + 1e-6)


def concat_net(widths: tuple[int, ...], reuse: bool = False) -> Graph:
    """x -> squeeze 1x1 -> [one conv per width] -> concat -> 1x1 conv; `reuse`: the first branch is
    also read by an add after the concat (so it cannot be written in place)."""
    b = NetBuilder("cat", (1, 8, 12, 12), seed=3)
    s = b.act(b.conv(b.x, 16, 1, name="squeeze"))
    branches = [b.act(b.conv(s, w, 3 if i % 2 else 1, pad=1 if i % 2 else 0, name=f"br{i}")) for i, w in
                enumerate(widths)]
    cat = b.g.op("concat", *branches, name="cat", axis=1)
    y = b.conv(cat, 16, 1, name="head")
    if reuse:
        y = b.g.op("add", y, b.conv(branches[0], 16, 1, name="side"), name="sum")
    return b.finish(y)


@pytest.fixture(scope="module")
def squeezenet() -> Graph:
    return at_resolution(zoo.build("squeezenet1_1"), 64)


def test_static_program_matches_reference_and_general_runner(squeezenet: Graph) -> None:
    feeds = feeds_for(squeezenet)
    ref = lpdc.compile(squeezenet, "numpy").run(feeds)
    fast = compile_tvm(squeezenet, "x86")
    general = compile_tvm(squeezenet, "x86", plan_memory=True)  # the arena runs on the general loop
    assert fast.runner == "static" and general.runner == "general"
    assert fast.plan.placements and not general.plan.placements  # SqueezeNet's 8 concats: elided here only
    got = fast.run(feeds)
    assert_close(got, ref)
    for k, v in general.run(feeds).items():
        np.testing.assert_array_equal(got[k], v)
    _, timings = fast.profile(feeds, repeats=2)
    assert len(timings) == len(fast.plan.steps) and all(t.primitive == "tvm" for t in timings)


def test_outputs_are_fresh_arrays_and_runs_are_independent(squeezenet: Graph) -> None:
    exe = compile_tvm(squeezenet, "x86")
    a, b = feeds_for(squeezenet, 1), feeds_for(squeezenet, 2)
    first = exe.run(a)
    kept = {k: v.copy() for k, v in first.items()}
    second = exe.run(b)
    for k in first:
        np.testing.assert_array_equal(first[k], kept[k])  # the second run did not write into the first's output
        assert not np.array_equal(first[k], second[k])
    assert_close(exe.run(a), kept)


def test_concurrent_runs_from_threads(squeezenet: Graph) -> None:
    exe = compile_tvm(squeezenet, "x86")
    inputs = [feeds_for(squeezenet, s) for s in range(4)]
    expected = [exe.run(f) for f in inputs]
    errors: list[str] = []

    def worker(i: int) -> None:
        for _ in range(5):
            got = exe.run(inputs[i])
            for k, v in expected[i].items():
                if not np.array_equal(got[k], v):
                    errors.append(f"thread {i}: {k} differs")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


@pytest.mark.parametrize(("widths", "reuse", "placed"), [
    ((16, 32), False, 2),       # windows at 0 and 16 of 48 channels: both in place
    ((16, 32, 16), False, 3),   # three producers, 1x1 and 3x3 (Winograd-free: 16 channels in)
    ((8, 8), False, 0),         # a window at 8 channels = 32 bytes: not 64-byte aligned, a real concat
    ((16, 24), False, 0),       # 40 channels in all: rows not aligned
    ((16, 32), True, 0),        # the first branch is read again later: the concat copies
])
def test_concat_inplace(widths: tuple[int, ...], reuse: bool, placed: int) -> None:
    g = concat_net(widths, reuse)
    feeds = feeds_for(g)
    ref = lpdc.compile(g, "numpy", opt_level=0).run(feeds)
    exe = compile_tvm(g, "x86")
    assert len(exe.plan.placements) == placed
    assert any(s.node.op == "concat" for s in exe.plan.steps) == (placed == 0)
    assert_close(exe.run(feeds), ref)
    off = compile_tvm(g, "x86", concat_inplace=False)
    assert not off.plan.placements
    assert_close(off.run(feeds), ref)


@pytest.mark.parametrize(("pad", "stride"), [(0, 2), (1, 2), (3, 1)])
def test_stem_conv_reads_the_nchw_graph_input(pad: int, stride: int) -> None:
    b = NetBuilder("stem", (1, 3, 23, 21), seed=7)
    y = b.act(b.conv(b.x, 24, 3 if pad < 3 else 7, stride=stride, pad=pad, name="stem"))
    side = b.pool(b.x, "max", 2, 2)  # a second reader of the input, which needs it NHWC
    g = b.finish(y, side)
    feeds = feeds_for(g)
    ref = lpdc.compile(g, "numpy", opt_level=0).run(feeds)
    exe = compile_tvm(g, "x86")
    (stem,) = [s for s in exe.plan.steps if s.node.name == "stem"]
    assert stem.nchw == (0,)
    assert all(s.nchw == () for s in exe.plan.steps if s is not stem)
    assert_close(exe.run(feeds), ref)
    assert_close(compile_tvm(g, "x86", plan_memory=True).run(feeds), ref)  # the general runner too


@pytest.mark.parametrize("rows_outer", [False, True])
def test_both_conv_loop_orders(rows_outer: bool) -> None:
    from dataclasses import replace

    from lpdc.backends.tvm.schedules.x86_conv import ConvKnobs

    b = NetBuilder("order", (1, 16, 15, 15), seed=5)
    g = b.finish(b.act(b.conv(b.act(b.x), 40, 3, stride=2, pad=1, name="c")))
    feeds = feeds_for(g)
    ref = lpdc.compile(g, "numpy", opt_level=0).run(feeds)
    for kn in (ConvKnobs(16, 32, 3, 64, 9), ConvKnobs(16, 48, 4, 48, 8)):
        exe = compile_tvm(g, "x86", knobs={"c": replace(kn, rows_outer=rows_outer)})
        assert_close(exe.run(feeds), ref)


def test_rows_outer_default_follows_the_weight_size() -> None:
    from lpdc.backends.tvm.compute import ConvShape
    from lpdc.backends.tvm.schedules.x86_conv import default_conv_knobs

    def shape(c: int, k: int, hw: int, ks: int) -> ConvShape:
        return ConvShape(1, hw, hw, c, k, ks, ks, hw, hw, (1, 1), (ks // 2,) * 4, (1, 1), 1)

    assert default_conv_knobs(shape(16, 96, 112, 1), 16).rows_outer  # 6 KiB of weights
    assert not default_conv_knobs(shape(512, 512, 14, 3), 16).rows_outer  # 9 MiB
    assert not default_conv_knobs(shape(64, 64, 7, 3), 16).rows_outer  # 7 rows for 2+ threads


def test_artifact_replays_measured_variants_and_elided_concats(tmp_path, monkeypatch) -> None:
    from lpdc.backends.tvm.artifact import load_tvm_artifact, save_tvm_artifact

    monkeypatch.setenv("LPDC_TVM_TIMES", str(tmp_path / "times.json"))
    g = concat_net((16, 32))
    feeds = feeds_for(g)
    exe = compile_tvm(g, "x86", variants="measure")
    assert exe.variant_choices and exe.plan.placements
    save_tvm_artifact(exe, tmp_path / "art")
    back = load_tvm_artifact(tmp_path / "art")
    assert sorted(back.plan.kernels) == sorted(exe.plan.kernels)
    assert {k: v.info.get("knobs") for k, v in back.plan.kernels.items()} == \
        {k: v.info.get("knobs") for k, v in exe.plan.kernels.items()}
    assert back.runner == "static" and len(back.plan.placements) == len(exe.plan.placements)
    want = exe.run(feeds)
    for k, v in back.run(feeds).items():
        np.testing.assert_array_equal(v, want[k])
