"""TVM's x86 u8 x i8 -> i32 dot-product intrinsics, re-registered for register-tile accumulators.

`tvm.s_tir.tensor_intrin.x86` declares the accumulator buffer in global scope, so it cannot
tensorize a block whose accumulator was cached in "local" scope (the register tile). These are
the same two implementations (VNNI `vpdpbusd`; AVX-512BW `pmaddubsw` + `pmaddwd`) with a local
accumulator, registered once under lpdc's own names. The LLVM inside TVM 0.27 declares
`vpdpbusd.512` on <64 x i8> operands (older LLVMs: <16 x i32>), hence the byte-vector arguments.
"""

from __future__ import annotations

from tvm.s_tir import TensorIntrin
from tvm.script import tirx as T

_NAMES = {"dot_16x4_vnni": "lpdc_dot_16x4_vnni_local", "dot_16x4_avx512": "lpdc_dot_16x4_avx512_local"}


@T.prim_func(s_tir=True)
def _desc(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        for i in T.serial(0, 16):
            for k in T.serial(0, 4):
                with T.sblock("update"):
                    vi, vk = T.axis.remap("SR", [i, k])
                    C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")


@T.prim_func(s_tir=True)
def _vnni(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16), dtype="uint8x64")
        C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
            C.vload([0], dtype="int32x16"), a, B.vload([0, 0], dtype="int8x64"), dtype="int32x16")


@T.prim_func(s_tir=True)
def _avx512(
    A: T.Buffer((4,), "uint8", offset_factor=1),
    B: T.Buffer((16, 4), "int8", offset_factor=1),
    C: T.Buffer((16,), "int32", offset_factor=1, scope="local"),
) -> None:
    with T.sblock("root"):
        T.reads(C[0:16], A[0:4], B[0:16, 0:4])
        T.writes(C[0:16])
        a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16), dtype="uint8x64")
        pairs = T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddubs.w.512"), a, B.vload([0, 0], dtype="int8x64"),
            dtype="int16x32")
        C[T.ramp(T.int32(0), 1, 16)] += T.call_llvm_pure_intrin(
            T.llvm_lookup_intrinsic_id("llvm.x86.avx512.pmaddw.d.512"), pairs, T.int16x32(1), dtype="int32x16")


_IMPLS = {"dot_16x4_vnni": _vnni, "dot_16x4_avx512": _avx512}
_registered: set[str] = set()


def local_intrinsic(name: str) -> str:
    """The registered name of TVM intrinsic `name`'s local-accumulator twin."""
    local = _NAMES[name]
    if local not in _registered:
        TensorIntrin.register(local, _desc, _IMPLS[name], override=True)
        _registered.add(local)
    return local
