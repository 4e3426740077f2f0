"""The pyopencl runtime: one device, one context, an in-order profiling queue, a kernel cache.

Finding a device that works. PyOpenCL's wheel carries its own PoCL (3.0-rc2, LLVM 14), whose
compiler rejects CPUs that LLVM 14 does not know (it passes `-target-cpu generic`, e.g. on AMD
Zen 5); a distribution PoCL (Debian's `pocl-opencl-icd`) or a vendor driver (Mali) then works.
So the runtime also looks at the system's ICD directory and takes the first device that really
builds and runs a probe kernel, unless LPDC_OPENCL_DEVICE (a substring of "platform / device")
says which. A machine with no working device gets an LpdcTargetError that says what was tried;
CPU-only targets never touch this module.

Threads: PoCL's CPU driver reads POCL_MAX_PTHREAD_COUNT once, when the platform is first
queried, so `configure_threads()` must run before any other OpenCL call in the process.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import LpdcTargetError

log = logging.getLogger(__name__)

_SYSTEM_ICD_DIR = Path("/etc/OpenCL/vendors")
_PROBE = "__kernel void lpdc_probe(__global float* a) { size_t i = get_global_id(0); a[i] = sqrt((float)i); }"
_lock = threading.Lock()
_runtime: Runtime | None = None
_failure: str | None = None


class OpenCLBuildError(LpdcTargetError):
    """An OpenCL program did not compile; the message holds the compiler log and the source."""


def configure_threads(count: int | None) -> None:
    """Limit PoCL's CPU driver to `count` worker threads (before the first OpenCL call)."""
    if _runtime is not None:
        raise LpdcTargetError("the OpenCL runtime is already started; configure its threads before first use")
    if count:
        os.environ["POCL_MAX_PTHREAD_COUNT"] = str(int(count))


def _use_system_icds() -> None:
    """Let the wheel's ICD loader also see the system's drivers (it only knows its own PoCL)."""
    if "OCL_ICD_VENDORS" not in os.environ and _SYSTEM_ICD_DIR.is_dir() and any(_SYSTEM_ICD_DIR.glob("*.icd")):
        os.environ["OCL_ICD_VENDORS"] = str(_SYSTEM_ICD_DIR)


def _probe(cl: Any, dev: Any) -> str | None:
    """None when `dev` builds and runs a small kernel correctly, else why not."""
    try:
        ctx = cl.Context([dev])
        q = cl.CommandQueue(ctx)
        prg = cl.Program(ctx, _PROBE).build()
        out = np.zeros(64, np.float32)
        buf = cl.Buffer(ctx, cl.mem_flags.WRITE_ONLY, out.nbytes)
        prg.lpdc_probe(q, (64,), None, buf)
        cl.enqueue_copy(q, out, buf)
        q.finish()
    except Exception as e:  # noqa: BLE001 - any driver failure disqualifies the device
        return f"{type(e).__name__}: {str(e).strip().splitlines()[0][:160] if str(e).strip() else ''}"
    if not np.allclose(out, np.sqrt(np.arange(64, dtype=np.float32))):
        return "the probe kernel computed wrong values"
    return None


def _pick_device() -> tuple[Any, Any]:
    _use_system_icds()
    try:
        import pyopencl as cl
    except ImportError as e:  # pragma: no cover - a dependency of the package
        raise LpdcTargetError(f"pyopencl is not installed ({e}); install lpdc's dependencies") from e
    try:
        platforms = cl.get_platforms()
    except Exception as e:  # noqa: BLE001 - no ICD loader / no platform
        raise LpdcTargetError(f"no OpenCL platform is present ({str(e).strip()[:200]}); install an OpenCL driver "
                              "(e.g. the pocl-opencl-icd package) or use a CPU-only target such as 'x86'") from e
    wanted = os.environ.get("LPDC_OPENCL_DEVICE", "").lower()
    tried = []
    for plat in platforms:
        for dev in plat.get_devices():
            label = f"{plat.name} {plat.version} / {dev.name}"
            if wanted and wanted not in label.lower():
                continue
            why = _probe(cl, dev)
            if why is None:
                log.info("OpenCL device: %s", label)
                return cl, dev
            tried.append(f"{label}: {why}")
    detail = "; ".join(tried) if tried else "no device" + (f" matches LPDC_OPENCL_DEVICE={wanted!r}" if wanted else "")
    raise LpdcTargetError(f"no working OpenCL device ({detail}); install an OpenCL driver (e.g. the "
                          "pocl-opencl-icd package) or use a CPU-only target such as 'x86'")


def get_runtime() -> Runtime:
    """The process's OpenCL runtime, started on first use (the failure is remembered)."""
    global _runtime, _failure
    with _lock:
        if _runtime is None:
            if _failure is not None:
                raise LpdcTargetError(_failure)
            try:
                cl, dev = _pick_device()
            except LpdcTargetError as e:
                _failure = e.message
                raise
            _runtime = Runtime(cl, dev)
        return _runtime


def available() -> bool:
    """True when a working OpenCL device exists (starts the runtime)."""
    try:
        get_runtime()
    except LpdcTargetError:
        return False
    return True


@dataclass
class Kernel:
    """A built kernel and how to call it: global and local size."""

    name: str
    fn: Any
    global_size: tuple[int, ...]
    local_size: tuple[int, ...] | None
    source: str = field(repr=False, default="")


class Runtime:
    """Context, queue, program cache and buffer helpers for one OpenCL device."""

    def __init__(self, cl: Any, device: Any) -> None:
        self.cl = cl
        self.device = device
        self.ctx = cl.Context([device])
        self.queue = cl.CommandQueue(self.ctx, properties=cl.command_queue_properties.PROFILING_ENABLE)
        self._programs: dict[str, Any] = {}
        self._kernels: dict[tuple[str, str], Any] = {}  # retrieving a kernel object is costly: once each
        self.description = f"{device.platform.name} {device.platform.version} / {device.name}"
        # A CPU device (PoCL) runs kernels on the host pointer of a USE_HOST_PTR buffer itself, so
        # a finished kernel's output is already in host memory: no map/unmap round trip needed.
        self.is_cpu = bool(device.type & cl.device_type.CPU)
        # Host memory handed over with USE_HOST_PTR must start on this boundary, or the driver
        # keeps a private copy (PoCL: 128 bytes; a misaligned pointer cost ~10 ms a launch).
        self.align = max(64, int(device.mem_base_addr_align) // 8)

    # ---- programs ------------------------------------------------------------------------------
    def program(self, source: str, where: str = "") -> Any:
        """Build `source` once (OpenCL C 1.2); an OpenCLBuildError carries the log and the source."""
        key = hashlib.sha256(source.encode()).hexdigest()
        prg = self._programs.get(key)
        if prg is None:
            try:
                prg = self.cl.Program(self.ctx, source).build(options=["-cl-std=CL1.2"])
            except Exception as e:  # noqa: BLE001 - a compiler failure: report log and source
                log_text = _build_log(e)
                numbered = "\n".join(f"{i + 1:4d}| {line}" for i, line in enumerate(source.splitlines()))
                raise OpenCLBuildError(f"OpenCL build failed on {self.device.name}:\n{log_text}\n--- source ---\n"
                                       f"{numbered}", where=where or None) from e
            self._programs[key] = prg
        return prg

    def kernel(self, source: str, name: str, global_size: tuple[int, ...],
               local_size: tuple[int, ...] | None, where: str = "") -> Kernel:
        prg = self.program(source, where)
        key = (hashlib.sha256(source.encode()).hexdigest(), name)
        fn = self._kernels.get(key)
        if fn is None:
            fn = self._kernels[key] = self.cl.Kernel(prg, name)
        return Kernel(name, fn, global_size, local_size, source)

    # ---- buffers -------------------------------------------------------------------------------
    def upload(self, a: np.ndarray) -> Any:
        """A device copy of `a`: float data as float32, index arrays (sparse weights) as they are."""
        a = np.asarray(a)
        a = np.ascontiguousarray(a if a.dtype.kind in "iu" else a.astype(np.float32, copy=False))
        mf = self.cl.mem_flags
        if a.nbytes == 0:
            return self.cl.Buffer(self.ctx, mf.READ_WRITE, 4)
        return self.cl.Buffer(self.ctx, mf.READ_WRITE | mf.COPY_HOST_PTR, hostbuf=a)

    def empty(self, nbytes: int) -> Any:
        return self.cl.Buffer(self.ctx, self.cl.mem_flags.READ_WRITE, max(int(nbytes), 4))

    def wrap(self, a: np.ndarray) -> Any:
        """A buffer over the host array itself (zero-copy where host and device share memory)."""
        return self.cl.Buffer(self.ctx, self.cl.mem_flags.READ_WRITE | self.cl.mem_flags.USE_HOST_PTR, hostbuf=a)

    def download(self, buf: Any, shape: tuple[int, ...], wait_for: list[Any] | None = None) -> np.ndarray:
        out = np.empty(shape, np.float32)
        if out.size:
            self.cl.enqueue_copy(self.queue, out, buf, wait_for=wait_for)
        return out

    def run(self, k: Kernel, buffers: list[Any], wait_for: list[Any] | None = None) -> Any:
        """Enqueue `k` (in-order queue); returns its event."""
        return k.fn(self.queue, k.global_size, k.local_size, *buffers, wait_for=wait_for)

    def finish(self) -> None:
        self.queue.finish()


def _build_log(e: Exception) -> str:
    text = str(e).strip()
    return text[-6000:] if text else "(the driver gave no log)"
