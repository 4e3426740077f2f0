"""TVM backend targets beyond running on the host: AArch64 cross builds, CUDA source, artifacts, CLI.

AArch64: an object file is always produced (checked by its ELF header); the shared library only
when Debian's aarch64-linux-gnu-gcc is installed. CUDA: the source is always generated; nvcc, or
NVRTC from the test extras' nvidia wheels, compiles it to PTX and ptxas assembles that for sm_80.
Tests that need a missing tool skip with why.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm")

import lpdc  # noqa: E402
from lpdc.backends.tvm.artifact import library_files, load_tvm_artifact, save_tvm_artifact  # noqa: E402
from lpdc.backends.tvm.cuda_compile import assemble, compile_ptx, ptx_compiler, ptx_compilers, ptxas  # noqa: E402
from lpdc.backends.tvm.target import host_mcpu, tvm_target  # noqa: E402
from lpdc.errors import LpdcTargetError  # noqa: E402
from lpdc.tools import zoo  # noqa: E402

EM_AARCH64 = 183


@pytest.fixture(scope="module")
def tiny():
    return zoo.build("tiny_cnn")


@pytest.fixture(scope="module")
def a72_build(tiny):
    return lpdc.compile(tiny, "a72")


def _elf_machine(data: bytes) -> int:
    assert data[:4] == b"\x7fELF"
    return struct.unpack_from("<H", data, 18)[0]


def test_a72_object_is_aarch64_with_neon_fma(a72_build) -> None:
    files = library_files(a72_build)
    obj = files["tvm/lib.o"]
    assert _elf_machine(obj) == EM_AARCH64
    asm = a72_build.lib.mod.inspect_source("s")
    assert "fmla" in asm and ".4s" in asm  # vectorised NEON fused multiply-adds


def test_foreign_target_cannot_run_here(a72_build, tiny) -> None:
    with pytest.raises(LpdcTargetError, match="another machine"):
        a72_build.run({tiny.inputs[0].name: np.zeros(tiny.inputs[0].type.shape, np.float32)})


def test_a72_plus_a53_builds_one_a53_library(tiny) -> None:
    exe = lpdc.compile(tiny, "a72+a53")
    assert exe.tvm_target.spec["mcpu"] == "cortex-a53"
    assert _elf_machine(library_files(exe)["tvm/lib.o"]) == EM_AARCH64


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-gcc") is None,
                    reason="aarch64-linux-gnu-gcc (Debian gcc-aarch64-linux-gnu) is not installed: no AArch64 .so")
def test_a72_shared_library(a72_build) -> None:
    so = library_files(a72_build)["tvm/lib.so"]
    assert _elf_machine(so) == EM_AARCH64
    assert so[16] == 3  # ET_DYN: a shared object


@pytest.fixture(scope="module")
def cuda_build(tiny):
    return lpdc.compile(tiny, "cuda")


def test_cuda_source_has_a_kernel_per_op(cuda_build) -> None:
    from lpdc.backends.tvm.artifact import cuda_source

    src = cuda_source(cuda_build)
    kernels = src.count("__global__")
    assert kernels >= len(cuda_build.plan.kernels)
    assert "blockIdx.x" in src and "threadIdx.x" in src


@pytest.mark.skipif(ptx_compiler() is None, reason="neither nvcc nor NVRTC (pip nvidia-cuda-nvrtc-cu12) is installed")
def test_nvidia_compilers_accept_cuda_source(cuda_build) -> None:
    files = library_files(cuda_build)
    ptx = files["tvm/kernels.ptx"].decode()
    assert ".target sm_80" in ptx
    assert ptx.count(".entry") >= len(cuda_build.plan.kernels)
    if ptxas() is not None:  # assembled to SASS: an ELF for the GPU
        assert files["tvm/kernels.cubin"][:4] == b"\x7fELF"


@pytest.mark.parametrize("how", ["nvcc", "nvrtc"])
def test_each_installed_compiler_accepts_the_source(how: str, cuda_build, tmp_path: Path) -> None:
    """Both routes checked wherever both exist: nvcc (CUDA toolkit) and NVRTC (the pip wheels)."""
    from lpdc.backends.tvm.artifact import cuda_source

    if how not in ptx_compilers():
        pytest.skip(f"{how} is not installed here (nvcc: CUDA toolkit; nvrtc: pip nvidia-cuda-nvrtc-cu12)")
    src = tmp_path / "kernels.cu"
    src.write_text(cuda_source(cuda_build))
    assert compile_ptx(src, tmp_path / "kernels.ptx", "sm_80", how=how) == how
    ptx = (tmp_path / "kernels.ptx").read_text()
    assert ".target sm_80" in ptx and ptx.count(".entry") >= len(cuda_build.plan.kernels)
    if ptxas() is not None:
        assemble(tmp_path / "kernels.ptx", tmp_path / "kernels.cubin", "sm_80")
        assert (tmp_path / "kernels.cubin").read_bytes()[:4] == b"\x7fELF"


@pytest.mark.parametrize("how", ["nvcc", "nvrtc"])
def test_rejected_cuda_source_is_an_lpdc_error(how: str, tmp_path: Path) -> None:
    if how not in ptx_compilers():
        pytest.skip(f"{how} is not installed here")
    src = tmp_path / "bad.cu"
    src.write_text('extern "C" __global__ void k(float* x) { x[threadIdx.x] = undefined_name; }\n')
    with pytest.raises(LpdcTargetError, match="undefined_name"):
        compile_ptx(src, tmp_path / "bad.ptx", "sm_80", how=how)
    assert not (tmp_path / "bad.ptx").exists()


def test_asking_for_a_missing_compiler_is_an_lpdc_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LpdcTargetError, match="'nvcc' is not installed"):
        compile_ptx(tmp_path / "k.cu", tmp_path / "k.ptx", "sm_80", how="nvcc")


def test_host_mcpu_from_flags() -> None:
    assert host_mcpu({"avx512f", "amx_tile"})[1] == 16
    assert host_mcpu({"avx2", "fma"})[1] == 8
    assert host_mcpu(set())[1] == 4
    assert tvm_target("x86").runs_here and not tvm_target("a53").runs_here


def test_artifact_round_trip_runs_stored_library(tmp_path: Path, tiny) -> None:
    exe = lpdc.compile(tiny, "x86")
    out = save_tvm_artifact(exe, tmp_path / "art")
    assert (out / "tvm" / "lib.so").exists()
    back = load_tvm_artifact(out)
    x = {tiny.inputs[0].name: np.random.default_rng(0).standard_normal(tiny.inputs[0].type.shape).astype(np.float32)}
    name = tiny.outputs[0].name
    np.testing.assert_allclose(back.run(x)[name], exe.run(x)[name], rtol=0, atol=1e-6)


def test_cli_compile_then_run(tmp_path: Path) -> None:
    art = tmp_path / "out"
    cmd = [sys.executable, "-m", "lpdc.tools.cli"]
    r = subprocess.run([*cmd, "compile", "zoo:tiny_cnn", "--target", "x86", "-o", str(art)], capture_output=True,
                       text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert (art / "tvm" / "lib.so").exists()
    r = subprocess.run([*cmd, "run", str(art), "--json"], capture_output=True, text=True, timeout=120, check=False)
    assert r.returncode == 0, r.stderr
    assert '"shape": [\n        1,\n        10\n      ]' in r.stdout
