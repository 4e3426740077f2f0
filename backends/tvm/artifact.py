"""TVM build outputs on disk: the library files a target produces, and artifacts that carry them.

- x86: `tvm/lib.so` (loadable here; `lpdc run DIR` executes it).
- a72 / a53: `tvm/lib.o` (AArch64 object, always) and `tvm/lib.so` when the Debian cross gcc
  `aarch64-linux-gnu-gcc` is installed (it is optional).
- cuda: `tvm/kernels.cu` (CUDA C source); `tvm/kernels.ptx` where nvcc or NVRTC is installed, and
  `tvm/kernels.cubin` (SASS) where ptxas is too (cuda_compile.py).

The artifact's graph is the optimised graph; loading re-plans it (deterministic: the same
kernel names and packed weights) and binds the stored library instead of rebuilding. The build's
decisions that were measured (kernel variants, sparse or dense) and concat elimination are kept
in meta.json and replayed, so the plan matches the library.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ...errors import LpdcExecutionError, LpdcTargetError
from ..artifact import load_artifact, save_artifact
from .cuda_compile import assemble, compile_ptx, ptx_compiler, ptxas

log = logging.getLogger(__name__)

CROSS_GCC = "aarch64-linux-gnu-gcc"


def library_files(exe: Any) -> dict[str, bytes]:
    """The files (name -> bytes) that hold `exe`'s compiled kernels for its target."""
    tt = exe.tvm_target
    with tempfile.TemporaryDirectory(prefix="lpdc_tvm_") as tmp:
        d = Path(tmp)
        if tt.name == "x86":
            exe.lib.export_library(str(d / "lib.so"))
        elif tt.kind == "cpu":
            exe.lib.mod.write_to_file(str(d / "lib.o"))
            if shutil.which(CROSS_GCC):
                from tvm.support import cc

                exe.lib.export_library(str(d / "lib.so"), fcompile=cc.cross_compiler(CROSS_GCC))
        else:
            src = cuda_source(exe)
            (d / "kernels.cu").write_text(src)
            arch = tt.spec.get("arch", "sm_80")
            if ptx_compiler() is not None:
                compile_ptx(d / "kernels.cu", d / "kernels.ptx", arch)
                if ptxas() is not None:
                    assemble(d / "kernels.ptx", d / "kernels.cubin", arch)
        return {f"tvm/{p.name}": p.read_bytes() for p in sorted(d.iterdir())}


def cuda_source(exe: Any) -> str:
    """The generated CUDA C of a cuda build (the device module imported by the host module)."""
    mods = list(exe.lib.mod.imports)
    if not mods:
        raise LpdcTargetError("the cuda build has no device module", where=exe.target_name)
    return mods[0].inspect_source("cuda")


def save_tvm_artifact(exe: Any, path: str | os.PathLike[str], meta: dict[str, Any] | None = None) -> Path:
    """Write the optimised graph, its weights and the compiled library as one artifact directory."""
    info = {"backend": "tvm", "target": exe.target_name, "fallbacks": exe.fallbacks,
            "kernels": sorted(exe.plan.kernels),
            "variants": {k: r["picked"] for k, r in getattr(exe, "variant_choices", {}).items() if r.get("used", True)},
            "sparse": {k: r["picked"] for k, r in exe.sparse_choices.items()},
            "concat_inplace": bool(exe.plan.placements),
            "fuse_depthwise": any(low.schedule == "dw_pw" for low in exe.plan.kernels.values()), **(meta or {})}
    return save_artifact(exe.graph, path, info, library_files(exe))


def is_tvm_artifact(path: str | os.PathLike[str]) -> bool:
    p = Path(path)
    return (p / "tvm").is_dir() and (p / "meta.json").exists()


def load_tvm_artifact(path: str | os.PathLike[str]) -> Any:
    """A TvmExecutable bound to the artifact's stored x86 library (no rebuild)."""
    import tvm

    from ..target import Target
    from . import tvm_device
    from .build import plan_graph
    from .executable import TvmExecutable
    from .target import tvm_target

    root = Path(path)
    graph, meta = load_artifact(root)
    tgt = Target(meta.get("target", "x86"))
    tt = tvm_target(tvm_device(tgt))
    lib_path = root / "tvm" / "lib.so"
    if not tt.runs_here:
        raise LpdcTargetError(f"artifact built for {tgt.name!r}: it runs on that device, not here", where=str(root))
    if not lib_path.exists():
        raise LpdcExecutionError("TVM artifact has no tvm/lib.so", where=str(root))
    overrides = {}
    if meta.get("variants"):
        from .variants import replay

        overrides = replay(graph, tt, meta["variants"], where=str(root))
    plan = plan_graph(graph, tt, sparse=meta.get("sparse") or "auto", overrides=overrides,
                      fuse_depthwise=bool(meta.get("fuse_depthwise")))
    if meta.get("concat_inplace"):
        from .concat_inplace import place_concats

        plan = place_concats(plan, set(graph.outputs))
    missing = sorted(set(plan.kernels) - set(meta.get("kernels", plan.kernels)))
    if missing:
        raise LpdcExecutionError(f"artifact library lacks kernels {missing[:3]} (built by another lpdc version?)",
                                 where=str(root))
    exe = TvmExecutable(graph, plan, tvm.runtime.load_module(str(lib_path)), tgt.name, True)
    exe.tvm_target = tt
    return exe
