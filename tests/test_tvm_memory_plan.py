"""The TVM backend run out of plan-memory's arena (`compile_tvm(..., plan_memory=True)`).

Zoo models (the heavy ones at 64x64, as in test_tvm_x86) give the same outputs with and without
the arena and match the NumPy reference; repeated runs do not leak data between runs; the arena
is the planner's size and smaller than all activations together; outputs are copies. A hand-made
graph covers the slots the planner shares but a TVM kernel may not overwrite (a flatten that
transposes, a view whose input is read later, NumPy fallbacks returning views of the arena).
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tvm")

from lpdc.backends.numpy import compile_numpy  # noqa: E402
from lpdc.backends.tvm import compile_tvm  # noqa: E402
from lpdc.ir import Graph, TensorType, random_inputs  # noqa: E402
from lpdc.passes.instruments import compare_outputs  # noqa: E402
from lpdc.passes.manager import PassManager, pipeline  # noqa: E402
from lpdc.passes.plan_memory import plan_memory  # noqa: E402
from lpdc.tools import zoo  # noqa: E402
from test_tvm_x86 import at_resolution  # noqa: E402

MODELS = [("tiny_cnn", None), ("squeezenet1_1", 64), ("resnet18", 64), ("mobilenet_v2", 64)]


def activation_bytes(g: Graph) -> int:
    """Every non-constant value in its own buffer: what a run without reuse would hold."""
    values = list(g.inputs) + [v for n in g.nodes if n.op != "const" for v in n.outputs]
    return sum(v.type.size * 4 for v in values)


@pytest.fixture(scope="module", params=MODELS, ids=[m for m, _ in MODELS])
def built(request):
    name, hw = request.param
    g = PassManager(pipeline(2)).run(at_resolution(zoo.build(name), hw))
    return g, compile_tvm(g, "x86"), compile_tvm(g, "x86", plan_memory=True)


def _same(got: dict, want: dict) -> None:
    assert list(got) == list(want)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=0, err_msg=k)


def test_planned_run_matches_unplanned_and_reference(built):
    g, plain, planned = built
    x = random_inputs(g, seed=1)
    out = planned.run(x)
    _same(out, plain.run(x))
    assert compare_outputs(compile_numpy(g).run(x), out, rtol=1e-4, atol=1e-6) is None
    assert planned.arena_misses == []  # every TVM kernel wrote into its planned slot


def test_runs_do_not_leak_into_each_other(built):
    g, _, planned = built
    x, y = random_inputs(g, seed=1), random_inputs(g, seed=2)
    first = planned.run(x)
    kept = {k: v.copy() for k, v in first.items()}
    other = planned.run(y)
    _same(first, kept)  # the second run did not overwrite what the first returned
    assert all(not np.allclose(other[k], kept[k]) for k in kept)
    for v in first.values():
        v[...] = 1e9  # the caller owns its outputs: scribbling on them changes nothing
    _same(planned.run(x), kept)


def test_arena_is_the_planned_size_and_smaller_than_all_activations(built):
    g, plain, planned = built
    plan = plan_memory(g)
    assert plain.arena_bytes is None and planned.arena_bytes == plan.arena_bytes
    assert 0 < planned.arena_bytes < activation_bytes(g)
    assert planned.arena_bytes % 64 == 0 and all(off % 64 == 0 for off in plan.offsets.values())


def _tricky() -> Graph:
    """Shared slots a TVM kernel must not overwrite, NumPy fallbacks, outputs read further on."""
    rng = np.random.default_rng(0)
    g = Graph("tricky")
    x = g.add_input("x", TensorType((1, 8, 6, 6), "f32"))
    w = g.add_const(rng.standard_normal((8, 8, 3, 3)).astype(np.float32) * 0.2, "w")
    c1 = g.op("conv", x, w, None, pad=[1, 1, 1, 1], name="c1")
    r1 = g.op("relu", c1, name="r1")  # in place over c1
    s1 = g.op("sigmoid", r1, name="s1")  # r1 is an output: not in place
    f1 = g.op("flatten", s1, name="f1")  # shares s1's slot, but s1 is read later (and it transposes)
    t1 = g.op("tanh", s1, name="t1")
    f2 = g.op("flatten", t1, name="f2")  # t1 dies here, yet NHWC -> NCHW order cannot run in place
    v = g.op("reshape", s1, name="v", shape=[1, 2, 24, 6])  # NumPy fallback sharing s1's slot
    q = g.op("relu", v, name="q")  # wants v in NHWC: its layout copy must not land on s1, read below
    gp = g.op("global_avg_pool", s1, name="gp")
    f3 = g.op("flatten", gp, name="f3")  # 1x1 spatial: the same order, may run in place
    rs = g.op("reshape", f3, name="rs", shape=[1, 2, 2, 2])  # NumPy fallback: an NCHW view of f3's slot
    q4 = g.op("identity", rs, name="q4")  # shares the slot too: its NHWC output must not land on rs
    e = g.op("transpose", rs, name="e", perm=[0, 1, 3, 2])  # NumPy reads rs's NCHW view after q4
    m = g.op("mul", f1, f2, name="m")
    g.set_outputs([r1, m, e, q, q4])
    g.verify()
    return g


def test_shared_slots_a_kernel_must_not_overwrite():
    g = _tricky()
    plain, planned = compile_tvm(g, "x86"), compile_tvm(g, "x86", plan_memory=True)
    assert set(plain.fallbacks) == {"v", "rs", "e"}
    x, y = random_inputs(g, seed=3), random_inputs(g, seed=4)
    ref = compile_numpy(g).run(x)
    first = planned.run(x)
    planned.run(y)
    _same(first, plain.run(x))
    assert compare_outputs(ref, first, rtol=1e-5, atol=1e-6) is None
    _same(planned.run(x), first)
    # wrote fresh arrays: the transposing flattens, and q4 whose slot still holds rs (read by e)
    assert set(planned.arena_misses) == {"f1", "f2", "q4"}
    assert planned.arena_bytes == plan_memory(g).arena_bytes < activation_bytes(g)


def test_fallback_views_into_other_slots_are_copied():
    g = _tricky()
    arena = compile_tvm(g, "x86", plan_memory=True)._arena
    by_name = {v.name: v for n in g.nodes for v in n.outputs}
    slot = arena.slot(by_name["m"], False)
    assert arena.adopt(by_name["m"], slot) is slot  # exactly its own slot: kept in place
    strided = arena.adopt(by_name["e"], slot[:, ::36].reshape(1, 2, 2, 2))  # a view elsewhere in the arena
    assert not np.may_share_memory(strided, arena.data)
