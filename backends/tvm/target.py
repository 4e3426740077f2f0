"""TVM targets for lpdc device names: host x86 (CPU features read from /proc/cpuinfo), AArch64
Cortex-A72/A53 (cross-compiled), and CUDA (source generation).

TVM's own host detection can under-report (a VM may hide the model), and `mcpu=native` silently
means generic in the bundled LLVM, so the host mcpu is chosen from the feature flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import LpdcTargetError

_AVX512_MCPUS = ("znver4", "znver5", "sapphirerapids", "icelake-server", "skylake-avx512", "cascadelake",
                 "cooperlake", "tigerlake", "icelake-client", "rocketlake", "alderlake-avx512", "graniterapids")


@dataclass(frozen=True)
class TvmTarget:
    """How to build for one lpdc device: the TVM target dict, vector lanes, and whether it runs here."""

    name: str
    spec: dict[str, Any]
    vec: int  # fp32 lanes per vector register
    registers: int  # vector registers (register-tile budget)
    runs_here: bool
    kind: str  # "cpu" | "gpu"

    def tvm(self) -> Any:
        import tvm

        return tvm.target.Target(self.spec)


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The host's CPU feature flags (empty when unreadable, e.g. not Linux)."""
    try:
        text = Path(path).read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def host_mcpu(flags: set[str]) -> tuple[str, int]:
    """(mcpu, fp32 vector lanes) for the host: trust LLVM's name when it agrees with the flags."""
    import tvm

    detected = str(tvm.target.codegen.llvm_get_system_cpu())
    if "avx512f" in flags:
        if "amx_tile" in flags and detected not in _AVX512_MCPUS:
            return "sapphirerapids", 16
        return (detected if detected in _AVX512_MCPUS else "skylake-avx512"), 16
    if "avx2" in flags:
        return (detected if detected not in ("generic", "") else "haswell"), 8
    return detected or "x86-64", 4


def tvm_target(device: str, cores: int = 2) -> TvmTarget:
    """The build target for one lpdc device name (x86, a72, a53, cuda)."""
    if device == "x86":
        mcpu, vec = host_mcpu(cpu_flags())
        return TvmTarget("x86", {"kind": "llvm", "mcpu": mcpu, "num-cores": cores}, vec, 32 if vec == 16 else 16,
                         True, "cpu")
    if device in ("a72", "a53"):
        mcpu = "cortex-a72" if device == "a72" else "cortex-a53"
        spec = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": mcpu, "mattr": ["+neon"],
                "num-cores": cores}
        return TvmTarget(device, spec, 4, 32, False, "cpu")
    if device == "cuda":
        return TvmTarget("cuda", {"kind": "cuda", "arch": "sm_80"}, 1, 0, False, "gpu")
    raise LpdcTargetError(f"the TVM backend has no target for device {device!r} (x86, a72, a53, cuda)")
