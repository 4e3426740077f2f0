"""meta_schedule's builder and runner, in this process.

meta_schedule's own LocalBuilder and LocalRunner each start a worker process that imports TVM,
~20 s apiece on a shared 2-core host: longer than the few trials a compile or a campaign row
asks for. These compile each candidate with tvm.compile and time it with time_evaluator here.
Used by compile_tvm's kernel tuning (ms_tuned.py) and the autotuner's "meta_schedule" kind
(autotune/ms_kind.py), which already runs inside a measurement worker with its own deadline.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from typing import Any

import numpy as np

RUN_MS = 5  # each candidate's timing while tuning only ranks it: callers time the tuned kernel again


def in_process(target: Any, work_dir: str, run_ms: float = RUN_MS) -> tuple[Any, Any]:
    """A meta_schedule builder and runner that compile and time candidates in this process, each
    candidate timed as the median of 3 repeats of at least `run_ms` milliseconds."""
    import tvm
    from tvm.ir.utils import derived_object
    from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
    from tvm.s_tir.meta_schedule.runner import PyRunner
    from tvm.s_tir.meta_schedule.runner.local_runner import LocalRunnerFuture

    libs: dict[str, Any] = {}

    @derived_object
    class Builder(PyBuilder):
        def build(self, build_inputs: list[Any]) -> list[Any]:
            out = []
            for inp in build_inputs:
                # meta_schedule removes each artifact's directory after measuring: give it one.
                path = os.path.join(tempfile.mkdtemp(dir=work_dir), "lib")
                try:
                    libs[path] = tvm.compile(inp.mod, target=target).jit()
                    out.append(BuilderResult(path, None))
                except Exception as e:  # noqa: BLE001 - a candidate that fails to build is dropped, not fatal
                    out.append(BuilderResult(None, str(e).splitlines()[0][:500]))
            return out

    @derived_object
    class Runner(PyRunner):
        def run(self, runner_inputs: list[Any]) -> list[Any]:
            out = []
            for inp in runner_inputs:
                lib = libs.pop(inp.artifact_path)
                try:
                    args = [random_tensor(tuple(int(d) for d in shape), str(dtype))
                            for _, dtype, shape in (a.as_json() for a in inp.args_info)]
                    ev = lib.time_evaluator("main", tvm.cpu(), number=1, repeat=3, min_repeat_ms=run_ms)
                    out.append(LocalRunnerFuture(res=[statistics.median(ev(*args).results)]))
                except Exception as e:  # noqa: BLE001 - a candidate that fails to run is dropped
                    out.append(LocalRunnerFuture(error_message=str(e).splitlines()[0][:500]))
            return out

    return Builder(), Runner()


def random_tensor(shape: tuple[int, ...], dtype: str) -> Any:
    import tvm

    rng = np.random.default_rng(0)
    data = rng.standard_normal(shape) if "float" in dtype else rng.integers(-8, 8, shape)
    return tvm.runtime.tensor(np.ascontiguousarray(data.astype(dtype)), tvm.cpu())
