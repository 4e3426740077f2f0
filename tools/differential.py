"""Differential testing: run one graph through every engine and compare against ONNX Runtime.

    result = check_graph(random_cnn(7), legs=default_legs(tvm=False))
    assert result.ok, result.describe()

The graph is exported to ONNX (ONNX Runtime runs that file: the independent oracle) and read
back through lpdc's ONNX frontend; the legs compile the re-imported graph (NumPy at O0, O2, O3 with
its PBQP primitive plan, TVM x86) plus the original in-memory graph at O0. Every leg must match
ONNX Runtime within `rtol * max|reference| + atol` (the project's tolerance convention).
Used by tests/test_differential.py and bench/bench_differential.py.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from ..errors import LpdcError
from ..ir import Graph, random_inputs

RTOL = 1e-4
ATOL = 1e-6
Leg = tuple[str, Callable[[Graph, Graph], object]]  # (name, fn(original, reimported) -> Executable)


@dataclass
class Result:
    """The outcome of one graph: per leg the worst error relative to the tolerance, and failures."""

    name: str
    errors: dict[str, float] = field(default_factory=dict)  # leg -> max abs error / allowed error
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def describe(self) -> str:
        return f"{self.name}: " + ("; ".join(self.failures) if self.failures else "ok")


def _compile(target: str, level: int) -> Callable[[Graph, Graph], object]:
    def run(original: Graph, reimported: Graph) -> object:
        from ..api import compile

        return compile(reimported, target=target, opt_level=level)
    return run


def default_legs(tvm: bool = False) -> list[Leg]:
    """NumPy on the built graph (O0) and on the re-imported one (O0, O2, O3); TVM x86 at O2 when asked."""
    from ..api import compile

    legs: list[Leg] = [("built-O0", lambda original, _: compile(original, opt_level=0)),
                       ("numpy-O0", _compile("numpy", 0)), ("numpy-O2", _compile("numpy", 2)),
                       ("numpy-O3", _compile("numpy", 3))]
    if tvm:
        legs.append(("tvm-x86", _compile("x86", 2)))
    return legs


def tvm_x86_available() -> str | None:
    """None when `lpdc.compile(..., target="x86")` compiles and runs a small graph, else the reason."""
    from ..api import compile
    from .random_cnn import random_cnn

    try:
        g = random_cnn(0)
        compile(g, target="x86").run(random_inputs(g))
    except Exception as e:  # any failure (missing TVM, backend incomplete) means: skip that leg
        return f"{type(e).__name__}: {e}"
    return None


@contextmanager
def model_costs() -> Iterator[None]:
    """O3's primitive selection from its cost model, not from benchmarks (fast and deterministic)."""
    old = os.environ.get("LPDC_SELECT_COSTS")
    os.environ["LPDC_SELECT_COSTS"] = "model"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LPDC_SELECT_COSTS", None)
        else:
            os.environ["LPDC_SELECT_COSTS"] = old


def onnx_reference(model: object, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, inputs), strict=True))


def check_graph(g: Graph, legs: list[Leg], seed: int = 0, rtol: float = RTOL, atol: float = ATOL) -> Result:
    """Compare every leg with ONNX Runtime on one random input; failures are listed, never raised."""
    from ..frontends.onnx import convert_model
    from ..frontends.onnx_export import export_onnx

    result = Result(g.name)
    inputs = random_inputs(g, seed)
    model = export_onnx(g, None)
    ref = onnx_reference(model, inputs)
    try:
        back = convert_model(model, source=f"<{g.name}.onnx>")
    except LpdcError as e:
        result.failures.append(f"re-import: {e}")
        return result
    for name, make in legs:
        try:
            out = make(g, back).run(inputs)
        except Exception as e:  # a crash in a leg is a finding, reported with the graph's seed
            result.failures.append(f"{name}: {type(e).__name__}: {_short(e)}")
            continue
        result.errors[name] = _compare(name, ref, out, rtol, atol, result.failures)
    return result


def _short(e: Exception) -> str:
    """First and last line of an error (TVM's schedule errors print whole IR modules)."""
    lines = [ln for ln in str(e).splitlines() if ln.strip()]
    return lines[0] if len(lines) < 2 else f"{lines[0]} ... {lines[-1]}"


def _compare(leg: str, ref: dict[str, np.ndarray], out: dict[str, np.ndarray], rtol: float, atol: float,
             failures: list[str]) -> float:
    worst = 0.0
    if set(out) != set(ref):
        failures.append(f"{leg}: outputs {sorted(out)} != reference {sorted(ref)}")
        return float("inf")
    for k, r in ref.items():
        o = np.asarray(out[k], np.float64)
        if o.shape != r.shape:
            failures.append(f"{leg}: output {k} has shape {o.shape}, reference {r.shape}")
            return float("inf")
        allowed = rtol * float(np.max(np.abs(r), initial=0.0)) + atol
        err = float(np.max(np.abs(o - r), initial=0.0)) if np.isfinite(o).all() else float("inf")
        worst = max(worst, err / allowed)
        if err > allowed:
            failures.append(f"{leg}: output {k} differs by {err:.3g} (allowed {allowed:.3g})")
    return worst
