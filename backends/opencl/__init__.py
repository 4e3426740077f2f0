"""The OpenCL backend: TVM-generated (and hand-written) OpenCL C run through pyopencl.

`compile_opencl(graph)` runs the whole graph on the local OpenCL device (PoCL here, a Mali GPU
on a board). Kernels stay within OpenCL 1.2 without fp64 so Mali drivers build them. TVM and
pyopencl are imported only when this is called, so `import lpdc` stays fast.
"""

from __future__ import annotations

import logging
import time

from ...ir import Graph

log = logging.getLogger(__name__)


def compile_opencl(graph: Graph, device: str = "opencl", **options):
    """Lower, schedule and generate `graph` (already optimised) for the local OpenCL device.

    `device` ("opencl", "mali") picks the kernels' tiles; the program runs on whatever OpenCL
    device is here, so a Mali program can be checked on PoCL before it goes to the board.

    `progress(desc, total) -> tick`, if given, hears each node planned (the CLI draws a bar)."""
    from .build import plan_gpu
    from .executable import OpenCLExecutable
    from .runtime import get_runtime

    rt = get_runtime()  # fail early, before any code generation, when no device works
    t0 = time.perf_counter()
    plan = plan_gpu(graph, device=device, progress=options.get("progress"))
    exe = OpenCLExecutable(graph, plan, rt, time.perf_counter() - t0)
    if plan.fallbacks:
        log.info("%d nodes run on the host: %s", len(plan.fallbacks), sorted(plan.fallbacks))
    return exe
