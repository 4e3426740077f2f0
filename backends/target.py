"""Targets: named sets of devices (`"mali+a72"`), each with numbers for the analytical cost model.

Measured costs (autotune/) override these numbers; they only need to rank primitives sensibly.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import LpdcTargetError


@dataclass(frozen=True)
class Device:
    """One compute device of a target."""

    name: str
    kind: str  # "cpu" | "gpu"
    backend: str  # "numpy" | "tvm" | "opencl"
    peak_gflops: float  # fp32, all cores
    bandwidth_gbs: float  # sustained memory bandwidth
    cores: int
    isa: str = ""  # LLVM target triple / OpenCL profile
    description: str = ""


DEVICES: dict[str, Device] = {
    "numpy": Device("numpy", "cpu", "numpy", 150.0, 10.0, 2, "", "the host through NumPy/BLAS (reference)"),
    "x86": Device("x86", "cpu", "tvm", 300.0, 12.0, 2, "x86_64-linux-gnu", "the host CPU through TVM/LLVM"),
    "a72": Device("a72", "cpu", "tvm", 28.8, 4.0, 2, "aarch64-linux-gnu",
                  "RK3399 big cluster: 2x Cortex-A72 @1.8 GHz, NEON (8 fp32 FLOP/cycle/core)"),
    "a53": Device("a53", "cpu", "tvm", 13.4, 3.0, 4, "aarch64-linux-gnu",
                  "RK3399 LITTLE cluster: 4x Cortex-A53 @1.4 GHz (about 2.4 fp32 FLOP/cycle/core)"),
    "mali": Device("mali", "gpu", "opencl", 36.0, 6.0, 4, "OpenCL 1.2 full profile, no fp64",
                   "Mali-T860 MP4 @ 800 MHz (RK3399)"),
    "cuda": Device("cuda", "gpu", "tvm", 5000.0, 100.0, 1, "nvptx64-nvidia-cuda", "a Jetson-class CUDA GPU"),
    "opencl": Device("opencl", "gpu", "opencl", 50.0, 10.0, 1, "any local OpenCL device (pocl here)"),
}


class Target:
    """A target built from a name such as "numpy", "x86", "a72+a53" or "mali+a72"."""

    def __init__(self, name: str | Target) -> None:
        if isinstance(name, Target):
            name = name.name
        if not isinstance(name, str) or not name.strip():
            raise LpdcTargetError(f"target must be a non-empty name, got {name!r}; known devices: {known_names()}")
        parts = [p.strip().lower() for p in name.split("+")]
        unknown = [p for p in parts if p not in DEVICES]
        if unknown:
            raise LpdcTargetError(f"unknown device {unknown[0]!r} in target {name!r}; known devices: {known_names()} "
                                  "(combine with '+', e.g. 'mali+a72')")
        if len(set(parts)) != len(parts):
            raise LpdcTargetError(f"target {name!r} names a device twice")
        self.name = "+".join(parts)
        self.devices: tuple[Device, ...] = tuple(DEVICES[p] for p in parts)

    @property
    def backends(self) -> set[str]:
        return {d.backend for d in self.devices}

    @property
    def is_heterogeneous(self) -> bool:
        return len(self.devices) > 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Target) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"Target({self.name!r})"


def known_names() -> str:
    return ", ".join(DEVICES)
