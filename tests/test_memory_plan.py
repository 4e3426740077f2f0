"""plan-memory: liveness, aliasing, in-place reuse, best-fit placement, and execution out of the arena.

Golden plans on small hand-written graphs, invariants on random DAGs (no two live buffers
overlap, peak_live <= arena <= naive), and ResNet-50 / MobileNet v2 run out of their arenas with
every intermediate value equal to the plain interpreter's.
"""

from __future__ import annotations

from dataclasses import replace

import lpdc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lpdc.backends.numpy import compile_numpy
from lpdc.backends.numpy.executable import Executable
from lpdc.errors import LpdcGraphError
from lpdc.ir import Graph, TensorType, random_inputs
from lpdc.passes.manager import PIPELINES, PassManager
from lpdc.passes.plan_memory import MemoryPlan, get_plan, plan_memory

VEC = TensorType((1, 16))  # 64 bytes: exactly one aligned slot


def _chain(ops: list[str]) -> Graph:
    g = Graph("chain")
    x = g.add_input("x", VEC)
    for i, op in enumerate(ops):
        x = g.op(op, x, name=f"n{i}", **({"axis": 1} if op == "softmax" else {}))
    g.set_outputs([x])
    return g


def test_chain_of_non_elementwise_ops_ping_pongs_two_buffers():
    p = plan_memory(_chain(["softmax"] * 4))
    assert p.naive_bytes == 5 * 64 and p.arena_bytes == 128 and p.peak_live_bytes == 128
    offsets = [p.offsets[n] for n in ("x", "n0", "n1", "n2", "n3")]
    assert offsets in ([0, 64, 0, 64, 0], [64, 0, 64, 0, 64])
    p.check()


def test_elementwise_chain_runs_in_place_unless_disabled():
    g = _chain(["relu", "sigmoid", "relu"])
    p = plan_memory(g)
    assert p.buffers == 1 and p.arena_bytes == 64 and set(p.offsets.values()) == {0}
    q = plan_memory(g, inplace=False)
    assert q.buffers == 4 and q.arena_bytes == 128


def test_views_alias_their_input_and_extend_its_life():
    g = Graph("views")
    x = g.add_input("x", TensorType((1, 4, 2, 2)))
    a = g.op("softmax", x, name="a", axis=1)
    f = g.op("flatten", a, name="f")
    b = g.op("softmax", f, name="b", axis=1)
    c = g.op("softmax", b, name="c", axis=1)
    g.set_outputs([c, f])  # the view is an output: a's buffer must live to the end
    p = plan_memory(g)
    assert p.offsets["f"] == p.offsets["a"] and p.buffer_ids["f"] == p.buffer_ids["a"]
    assert p.lifetimes["a"] == (0, len(g.nodes))
    assert len({p.offsets["a"], p.offsets["b"], p.offsets["c"]}) == 3
    p.check()


def test_residual_keeps_the_branch_alive_and_add_reuses_a_dying_input():
    g = Graph("res")
    x = g.add_input("x", VEC)
    a = g.op("softmax", x, name="a", axis=1)
    b = g.op("softmax", a, name="b", axis=1)
    c = g.op("add", a, b, name="c")
    g.set_outputs([c])
    p = plan_memory(g)
    assert p.offsets["a"] != p.offsets["b"]
    assert p.offsets["c"] in (p.offsets["a"], p.offsets["b"])
    assert p.arena_bytes == 128 and p.peak_live_bytes == 128 and p.naive_bytes == 256


def test_bits_scale_sizes_and_alignment_rounds_offsets():
    g = _chain(["softmax"] * 3)
    assert plan_memory(g, bits=8).naive_bytes == plan_memory(g).naive_bytes // 4
    p = plan_memory(g, alignment=256)
    assert all(o % 256 == 0 for o in p.offsets.values()) and p.arena_bytes == 512
    with pytest.raises(LpdcGraphError):
        plan_memory(g, alignment=0)
    with pytest.raises(LpdcGraphError, match="cannot back a run"):
        Executable(g, plan_memory(g, bits=8)).run(random_inputs(g))


def test_check_catches_overlapping_live_buffers():
    p = plan_memory(_chain(["softmax"] * 2))
    broken = replace(p, offsets=dict.fromkeys(p.offsets, 0))
    with pytest.raises(LpdcGraphError, match="overlaps live values"):
        broken.check()


def test_registered_pass_attaches_the_plan_and_is_not_in_pipelines():
    g = lpdc.load("zoo:tiny_cnn")
    out = PassManager(["plan-memory"]).run(g)
    assert out is g and str(out) == str(lpdc.load("zoo:tiny_cnn"))
    plan = get_plan(g)
    assert plan is get_plan(g) and plan.arena_bytes == plan_memory(g).arena_bytes
    assert all("plan-memory" not in names for names in PIPELINES.values())
    g.set_outputs([g.value("fc1")])  # a graph edit invalidates the cached plan
    g.erase(g.nodes[-1])
    assert get_plan(g) is not plan and "prob" not in get_plan(g).offsets


def _capture_all(exe: Executable, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    seen: dict[str, np.ndarray] = {}
    exe.run(inputs, observer=lambda node, outs: seen.update({v.name: np.array(r) for v, r in
                                                               zip(node.outputs, outs, strict=True)}))
    return seen


def _assert_same_run(g: Graph, plan: MemoryPlan) -> None:
    inputs = random_inputs(g, seed=3)
    want = _capture_all(compile_numpy(g), inputs)
    got = _capture_all(Executable(g, plan), inputs)
    for name, ref in want.items():  # every intermediate, not only the (possibly saturated) output
        np.testing.assert_array_equal(got[name], ref, err_msg=name)


_OPS = ("relu", "sigmoid", "softmax", "add", "concat_slice", "flatten")


@settings(max_examples=25)
@given(st.lists(st.tuples(st.sampled_from(_OPS), st.integers(0, 1000), st.integers(0, 1000)), min_size=1, max_size=14),
       st.integers(0, 4))
def test_random_graphs_plan_safely_and_run_identically(steps, n_outputs):
    g = Graph("rand")
    vals = [g.add_input("x", TensorType((1, 8, 2, 2)))]
    for i, (op, a, b) in enumerate(steps):
        x, y = vals[a % len(vals)], vals[b % len(vals)]
        if op == "add":
            v = g.op("add", x, y, name=f"v{i}")
        elif op == "concat_slice":
            c = g.op("concat", x, y, name=f"c{i}", axis=1)
            v = g.op("slice", c, name=f"v{i}", starts=[4], ends=[12], axes=[1])
        elif op == "flatten":
            v = g.op("reshape", g.op("flatten", x, name=f"f{i}"), name=f"v{i}", shape=[1, 8, 2, 2])
        else:
            v = g.op(op, x, name=f"v{i}", **({"axis": 1} if op == "softmax" else {}))
        vals.append(v)
    g.set_outputs(vals[-1 - min(n_outputs, len(vals) - 2):] if len(vals) > 1 else vals)
    for inplace in (True, False):
        p = plan_memory(g, inplace=inplace)
        p.check()
        assert p.peak_live_bytes <= p.arena_bytes <= p.naive_bytes + 64 * len(p.offsets)
        _assert_same_run(g, p)


def test_a_wrong_plan_would_change_the_numbers():
    """The arena run really reads from the planned slots (else the equality tests prove nothing)."""
    g = Graph("res")
    x = g.add_input("x", VEC)
    a = g.op("softmax", x, name="a", axis=1)
    b = g.op("softmax", a, name="b", axis=1)
    g.set_outputs([g.op("sub", a, b, name="c")])  # b written over a would make c == 0
    p = plan_memory(g)
    broken = replace(p, offsets=dict.fromkeys(p.offsets, 0))
    inputs = random_inputs(g, seed=1)
    want = compile_numpy(g).run(inputs)["c"]
    assert np.abs(want).max() > 1e-3
    np.testing.assert_array_equal(Executable(g, p).run(inputs)["c"], want)
    assert np.abs(Executable(g, broken).run(inputs)["c"]).max() == 0


def _zoo(name: str) -> Graph:
    from lpdc.tools.zoo import MODELS

    if name not in MODELS:
        pytest.skip(f"zoo model {name!r} is not in lpdc.tools.zoo.MODELS in this build")
    return lpdc.load(f"zoo:{name}")


@pytest.mark.parametrize("name, max_ratio", [("resnet50", 0.10), ("mobilenet_v2", 0.20)])
def test_zoo_models_arena_is_far_below_naive_and_outputs_are_unchanged(name, max_ratio):
    g = _zoo(name)
    p = plan_memory(g)
    p.check()
    # ResNet-50 at 224x224 f32: 9.2 MiB arena vs 144 MiB naive; MobileNet v2: 9.2 MiB vs 76 MiB
    assert p.peak_live_bytes <= p.arena_bytes <= 1.05 * p.peak_live_bytes
    assert p.arena_bytes < max_ratio * p.naive_bytes
    _assert_same_run(g, p)
    exe = compile_numpy(g, plan_memory=True)
    assert exe.memory_plan is not None and exe.memory_plan.arena_bytes == p.arena_bytes
