"""Differential testing on random CNNs: ONNX Runtime vs lpdc NumPy (built graph at O0; re-imported
at O0, O2, O3 with its PBQP plan) vs TVM x86 (when `lpdc.compile(..., target="x86")` works).
bench/bench_differential.py runs thousands of seeds on demand."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from lpdc.tools.differential import check_graph, default_legs, model_costs, tvm_x86_available
from lpdc.tools.random_cnn import random_cnn

N_GRAPHS = 400  # ~0.05 s each on one core
N_TVM = 8  # a TVM compile costs about a second


@pytest.fixture(autouse=True)
def _model_costs():
    with model_costs(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_random_graphs_agree_across_all_engines():
    legs = default_legs(tvm=False)
    failures, ops = [], set()
    for seed in range(N_GRAPHS):
        g = random_cnn(seed)
        ops |= {n.op for n in g.nodes}
        r = check_graph(g, legs, seed=seed)
        failures += [f"seed {seed}: {r.describe()}"] if not r.ok else []
        assert set(r.errors) == {name for name, _ in legs}  # every leg ran and was compared
    assert not failures, "\n".join(failures[:10])
    # The generator covers what the issue asks for.
    assert {"conv", "max_pool", "avg_pool", "relu", "leaky_relu", "sigmoid", "clip", "batch_norm", "add", "concat",
            "fully_connected", "softmax", "global_avg_pool"} <= ops


def test_random_graphs_are_deterministic_and_varied():
    a, b = random_cnn(11), random_cnn(11)
    assert str(a) == str(b)
    assert len({str(random_cnn(s)).split("{", 1)[0] for s in range(20)}) > 10  # different input shapes


def test_checker_catches_a_wrong_answer():
    """A leg that is off by 1e-3 x max|output| must be reported (the tolerance is 1e-4)."""
    from lpdc.api import compile

    class Skewed:
        def __init__(self, exe):
            self.exe = exe

        def run(self, inputs):
            return {k: v + 1e-3 * np.max(np.abs(v)) for k, v in self.exe.run(inputs).items()}

    r = check_graph(random_cnn(5), [("skewed", lambda g, _: Skewed(compile(g, opt_level=0)))])
    assert not r.ok and "skewed: output" in r.describe() and r.errors["skewed"] > 5


def test_tvm_x86_leg():
    reason = tvm_x86_available()
    if reason is not None:
        pytest.skip(f"lpdc.compile(target='x86') does not work here: {reason}")
    legs = [leg for leg in default_legs(tvm=True) if leg[0] == "tvm-x86"]
    for seed in range(N_TVM):
        r = check_graph(random_cnn(seed), legs, seed=seed)
        assert r.ok and r.errors["tvm-x86"] <= 1, r.describe()
