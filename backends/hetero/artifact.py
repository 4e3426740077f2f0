"""A co-execution plan on disk, for its board: plan.json, weights, CPU library, OpenCL sources.

Layout (inside the usual atomic artifact directory, backends/artifact.py):
  graph.lpir + params.npz   the graph with split layers expanded and every node's device
  plan.json                 per layer: device, CPU share of its channels, the times behind it
  cpu/lib.o, cpu/lib.so     the CPU side for the target's CPU (AArch64 for a72/a53; .so when a
                            cross compiler is installed), or the host library for x86
  opencl/program.cl         the TVM-generated GPU kernels; opencl/<name>.cl hand-written ones
`load_hetero_artifact(DIR, emulate=True)` rebuilds the CPU side for this host and checks that the
GPU kernels it generates are the saved sources byte for byte, then builds those sources on the
local OpenCL device: the same plan and the same OpenCL C a board would run.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

from ...errors import LpdcExecutionError, LpdcParseError, LpdcTargetError
from ..artifact import load_artifact, save_artifact
from ..target import Target

PLAN_FILE = "plan.json"
PROGRAM_FILE = "opencl/program.cl"


def _board_cpu(tgt: Target) -> str:
    from . import sides

    cpu, _ = sides(tgt)
    return "a53" if cpu.name == "a72+a53" else cpu.name


def save_hetero_artifact(exe: Any, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    from ..tvm.artifact import library_files
    from ..tvm.build import build_module, plan_graph
    from ..tvm.target import tvm_target

    tgt = Target(exe.target_name)
    device = _board_cpu(tgt)
    files: dict[str, bytes] = {}
    plan = exe.plan.to_json()
    plan["gpu_kernels"] = [{"node": s.node.name, "kernel": s.kernel or (s.handwritten and s.handwritten.name),
                            "handwritten": s.handwritten is not None,
                            "global": list(s.spec and (s.spec.global_size,) or s.handwritten.global_size),
                            "local": list(s.spec and (s.spec.local,) or s.handwritten.local_size or [])}
                           for s in exe.gpu_plan.steps if s.kernel is not None or s.handwritten is not None]
    files[PLAN_FILE] = json.dumps(plan, indent=1).encode()
    files[PROGRAM_FILE] = exe.gpu_plan.source.encode()
    for s in exe.gpu_plan.steps:
        if s.handwritten is not None:
            files[f"opencl/{s.handwritten.name}.cl"] = s.handwritten.source.encode()
    if device == "x86":
        cpu = exe.cpu
    else:  # build the CPU side for the board's CPU
        tt = tvm_target(device)
        names = {st.node.name for st in exe.cpu.plan.steps}
        cpu_plan = plan_graph(exe.graph, tt, only=names)

        class _Built:
            tvm_target = tt
            lib = build_module(cpu_plan, tt)

        cpu = _Built()
    files.update({name.replace("tvm/", "cpu/"): data for name, data in library_files(cpu).items()})
    info = {"backend": "hetero", "target": tgt.name, "cpu_device": device, **(meta or {})}
    return save_artifact(exe.graph, path, info, files)


def is_hetero_artifact(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return (p / PLAN_FILE).exists() and (p / "opencl").is_dir()


def load_hetero_artifact(path: str | os.PathLike[str], emulate: bool = False) -> Any:
    """The artifact's executable: on its board, or emulated on this host (`emulate=True`)."""
    from ..opencl.runtime import get_runtime
    from . import build_annotated
    from .plan import HeteroPlan

    root = Path(path)
    graph, meta = load_artifact(root)
    try:
        plan = HeteroPlan.from_json(json.loads((root / PLAN_FILE).read_text()))
        saved = (root / PROGRAM_FILE).read_text()
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise LpdcParseError(f"corrupt co-execution plan: {e}", where=str(root)) from None
    tgt = Target(meta.get("target", plan.target))
    device = meta.get("cpu_device", "x86")
    here = device == "x86" or (device in ("a72", "a53") and platform.machine() in ("aarch64", "arm64"))
    if not here and not emulate:
        raise LpdcTargetError(f"this artifact's CPU side is {device}; run it on that board, or emulate it here "
                              "(lpdc run ARTIFACT --emulate)", where=str(root))
    lib = None
    if here and not emulate:
        import tvm

        so = root / "cpu" / "lib.so"
        if not so.exists():
            raise LpdcExecutionError("the artifact has no cpu/lib.so for this machine", where=str(root))
        lib = tvm.runtime.load_module(str(so))
    exe = build_annotated(graph, plan, tgt, get_runtime(), emulated=emulate or not here, cpu_lib=lib,
                          cpu_device=device if lib is not None else "x86")
    if exe.gpu_plan.source != saved:
        raise LpdcExecutionError("the OpenCL kernels this lpdc generates differ from the artifact's "
                                 "opencl/program.cl (made by another lpdc version?): recompile the model",
                                 where=str(root))
    return exe
