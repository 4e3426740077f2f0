"""How many threads TVM's runtime pool runs kernels with on this host.

TVM sizes its pool from `std::thread::hardware_concurrency()` halved on x86 (it assumes two SMT
threads per core), so on a VM whose vCPUs are real cores (2 vCPUs, 1 thread per core here) a
parallel kernel runs on ONE thread: measured 223 GFLOP/s on a 1x1 conv with the default pool vs
411 GFLOP/s with two threads (Zen 5, 2 vCPUs). lpdc therefore sizes the pool to the CPUs this
process may run on, unless the user set TVM_NUM_THREADS (respected as is). The runtime caps
`config_threadpool` at that same halved count and reads only TVM_NUM_THREADS to lift it, so the
variable is set in this process's environment (measurement workers it starts inherit it).
"""

from __future__ import annotations

import os

_configured: int | None = None


def host_threads() -> int:
    """The CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _affinity() -> set[int] | None:
    try:
        return os.sched_getaffinity(0)
    except (AttributeError, OSError):
        return None


def ensure_threads() -> int:
    """Configure TVM's pool once per process (TVM_NUM_THREADS wins); the thread count in use."""
    global _configured
    env = os.environ.get("TVM_NUM_THREADS")
    if env and _configured is None:
        return int(env) if env.isdigit() else 1
    if _configured is None:
        import tvm

        n = host_threads()
        os.environ["TVM_NUM_THREADS"] = str(n)
        affinity = _affinity()
        tvm.get_global_func("runtime.config_threadpool")(1, n)  # resize a pool that already exists
        if affinity is not None:
            # config_threadpool pins the calling thread to one core, and threads created after
            # inherit that (ONNX Runtime's pool ran 2x slower in the same process): undo it.
            os.sched_setaffinity(0, affinity)
        _configured = n
    return _configured
