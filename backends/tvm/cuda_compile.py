"""Compile the CUDA build's source with NVIDIA's own compilers: nvcc, or NVRTC and ptxas from PyPI.

A machine with the CUDA toolkit has nvcc. One without (CI, this project's hosts) can still check
the generated source for real: the `nvidia-cuda-nvrtc-cu12` wheel is NVIDIA's runtime compiler
(the same NVVM front end as nvcc; it needs libcu++ headers, from `nvidia-cuda-cccl-cu12`, for the
`cuda/std` includes TVM emits under NVRTC), and `nvidia-cuda-nvcc-cu12` carries ptxas, which
assembles the PTX into SASS for the chosen architecture. No GPU is needed for any of it.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

from ...errors import LpdcTargetError


def _package_dir(module: str) -> Path | None:
    try:
        mod = __import__(module, fromlist=["__path__"])
    except ImportError:
        return None
    return Path(next(iter(mod.__path__)))


def nvrtc_library() -> Path | None:
    d = _package_dir("nvidia.cuda_nvrtc")
    libs = sorted((d / "lib").glob("libnvrtc.so*")) if d is not None else []
    return next((p for p in libs if "builtins" not in p.name), None)


def cccl_include() -> Path | None:
    d = _package_dir("nvidia.cuda_cccl")
    return d / "include" if d is not None and (d / "include" / "cuda" / "std" / "cstdint").exists() else None


def ptxas() -> str | None:
    found = shutil.which("ptxas")
    if found:
        return found
    d = _package_dir("nvidia.cuda_nvcc")
    p = d / "bin" / "ptxas" if d is not None else None
    return str(p) if p is not None and p.exists() else None


def ptx_compilers() -> list[str]:
    """The CUDA C -> PTX compilers installed here, preferred first: "nvcc", "nvrtc"."""
    found = ["nvcc"] if shutil.which("nvcc") else []
    if nvrtc_library() is not None and cccl_include() is not None:
        found.append("nvrtc")
    return found


def ptx_compiler() -> str | None:
    """"nvcc", "nvrtc" or None: what compile_ptx uses here by default."""
    return next(iter(ptx_compilers()), None)


def compile_ptx(src: Path, dest: Path, arch: str, how: str | None = None) -> str:
    """CUDA C `src` -> PTX `dest` for `arch` (e.g. sm_80) with `how` (default: nvcc, else NVRTC);
    returns which. Raises LpdcTargetError with the compiler's message when it rejects the source."""
    how = how or ptx_compiler()
    if how is not None and how not in ptx_compilers():
        raise LpdcTargetError(f"CUDA compiler {how!r} is not installed here (found: {ptx_compilers()})",
                              where=str(src))
    if how == "nvcc":
        r = subprocess.run(["nvcc", "-ptx", f"-arch={arch}", str(src), "-o", str(dest)], capture_output=True,
                           text=True, timeout=300, check=False)
        if r.returncode != 0:
            raise LpdcTargetError(f"nvcc rejected the generated CUDA source: {r.stderr.strip()[-2000:]}",
                                  where=str(src))
    elif how == "nvrtc":
        dest.write_bytes(_nvrtc_ptx(src.read_text(), arch, str(src)))
    else:
        raise LpdcTargetError("no CUDA compiler: install the CUDA toolkit (nvcc) or `pip install lpdc[cuda]` (NVRTC)",
                              where=str(src))
    return how


def assemble(ptx: Path, dest: Path, arch: str) -> None:
    """PTX -> a cubin of SASS for `arch` with ptxas (register allocation and all: a real check)."""
    tool = ptxas()
    if tool is None:
        raise LpdcTargetError("ptxas is not installed (CUDA toolkit, or the nvidia-cuda-nvcc-cu12 wheel)",
                              where=str(ptx))
    r = subprocess.run([tool, f"-arch={arch}", str(ptx), "-o", str(dest)], capture_output=True, text=True,
                       timeout=300, check=False)
    if r.returncode != 0:
        raise LpdcTargetError(f"ptxas rejected the PTX: {r.stderr.strip()[-2000:]}", where=str(ptx))


def _nvrtc_ptx(source: str, arch: str, name: str) -> bytes:
    lib = ctypes.CDLL(str(nvrtc_library()))
    prog = ctypes.c_void_p()
    _check(lib, lib.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), b"kernels.cu", 0, None, None), name)
    try:
        opts = [f"--gpu-architecture={arch.replace('sm_', 'compute_')}".encode(), f"-I{cccl_include()}".encode()]
        status = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
        if status != 0:
            size = ctypes.c_size_t()
            lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
            log = ctypes.create_string_buffer(size.value)
            lib.nvrtcGetProgramLog(prog, log)
            errors = [ln for ln in log.value.decode(errors="replace").splitlines() if "error" in ln]
            raise LpdcTargetError(f"NVRTC rejected the generated CUDA source: {' | '.join(errors)[-2000:]}",
                                  where=name)
        size = ctypes.c_size_t()
        _check(lib, lib.nvrtcGetPTXSize(prog, ctypes.byref(size)), name)
        ptx = ctypes.create_string_buffer(size.value)
        _check(lib, lib.nvrtcGetPTX(prog, ptx), name)
        return ptx.value
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))


def _check(lib: ctypes.CDLL, status: int, name: str) -> None:
    if status != 0:
        lib.nvrtcGetErrorString.restype = ctypes.c_char_p
        raise LpdcTargetError(f"NVRTC failed: {lib.nvrtcGetErrorString(status).decode()}", where=name)
