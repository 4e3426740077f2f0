"""TVM -> OpenCL C: schedule each lowered node as exactly one GPU kernel and generate its source.

The TE computes are the TVM backend's own (backends/tvm/lower.py: NHWC activations, packed
weights, fused bias/activation/residual epilogues), so both CPU and GPU sides of a plan compute
the same thing. The GPU schedule here is the classic one: producers (padding) inlined, the
reduction block's outer spatial loops fused and bound to (blockIdx.x, threadIdx.x), each thread
keeping a small register tile (`jt` columns x `kt` channels, channels innermost so neighbouring
work-items read neighbouring weights) in `local` scope, and the epilogue computed right after
the reduction by the same thread. One kernel per function means the launch size is known here
(TVM's own launcher is not in the wheel: USE_OPENCL=OFF), and pyopencl can call it directly.

TVM names kernel parameters after the buffers and orders them its own way (alphabetically), so
the order is read back from the generated signature.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ...errors import LpdcUnsupportedError

# Work-items per work-group: a multiple of a Mali quad and of AVX-512's 16 lanes.
DEFAULT_LOCAL = 64


@dataclass(frozen=True)
class KernelSpec:
    """A scheduled function: its buffers (in PrimFunc parameter order) and its launch size."""

    name: str
    params: tuple[str, ...]  # buffer names in the PrimFunc's order (= Lowered.tensors order)
    threads: int  # work-items that do work
    local: int

    @property
    def global_size(self) -> int:
        return -(-self.threads // self.local) * self.local


def _largest_divisor(n: int, limit: int) -> int:
    return max(d for d in range(1, min(n, limit) + 1) if n % d == 0)


def schedule_kernel(f: Any, name: str, tile: tuple[int, int] = (4, 8),
                    local: int = DEFAULT_LOCAL) -> tuple[Any, KernelSpec]:
    """Schedule PrimFunc `f` as one OpenCL kernel; LpdcUnsupportedError when it cannot be."""
    from tvm import s_tir

    sch = s_tir.Schedule(f)
    root = sch.get_sblock("root")
    blocks = list(sch.get_child_blocks(root))

    def reduces(b: Any) -> bool:
        return any(int(iv.iter_type) != 0 for iv in sch.get(b).iter_vars)

    reds = [b for b in blocks if reduces(b)]
    if len(reds) > 1:
        raise LpdcUnsupportedError(f"{name}: {len(reds)} reduction stages do not fit one kernel")
    last = blocks[-1]
    main = reds[0] if reds else last
    for b in blocks:
        if sch.get(b).same_as(sch.get(main)) or sch.get(b).same_as(sch.get(last)):
            continue
        if not (_attempt(lambda b=b: sch.compute_inline(b)) or _attempt(lambda b=b: sch.reverse_compute_inline(b))):
            raise LpdcUnsupportedError(f"{name}: stage {sch.get(b).name_hint} cannot be inlined")
    main_is_last = sch.get(main).same_as(sch.get(last))

    loops = list(sch.get_loops(main))
    kinds = [int(iv.iter_type) for iv in sch.get(main).iter_vars]
    if len(kinds) != len(loops):
        raise LpdcUnsupportedError(f"{name}: block loops do not match its iterators")
    spatial = [lp for lp, k in zip(loops, kinds, strict=True) if k == 0]
    red = [lp for lp, k in zip(loops, kinds, strict=True) if k != 0]
    if not spatial:
        raise LpdcUnsupportedError(f"{name}: no parallel loop")
    inner: list[Any] = []
    if red:  # register tile: jt x kt outputs per work-item
        jt, kt = tile
        k_ext = int(sch.get(spatial[-1]).extent)
        kt = _largest_divisor(k_ext, kt)
        ko, ki = sch.split(spatial[-1], [None, kt])
        outer, inner = spatial[:-1] + [ko], [ki]
        if len(spatial) >= 2 and kt > 1:
            j_ext = int(sch.get(spatial[-2]).extent)
            jt = _largest_divisor(j_ext, jt)
            jo, ji = sch.split(spatial[-2], [None, jt])
            outer, inner = spatial[:-2] + [jo, ko], [ji, ki]
        sch.reorder(*outer, *red, *inner)
    else:
        outer = spatial
    fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]
    threads = int(sch.get(fused).extent)
    local = min(local, threads) if threads < local else local
    bx, tx = sch.split(fused, [None, local])
    sch.bind(bx, "blockIdx.x")
    sch.bind(tx, "threadIdx.x")
    if red:
        if main_is_last:
            cw = sch.cache_write(main, 0, "local")
            sch.reverse_compute_at(cw, tx)
        else:
            sch.set_scope(main, 0, "local")
            sch.reverse_compute_at(last, tx)
        sch.decompose_reduction(main, red[0])
    params = tuple(str(p.name) for p in f.params)
    if len(set(params)) != len(params):
        raise LpdcUnsupportedError(f"{name}: buffer names repeat ({params}), kernel arguments would be ambiguous")
    return sch.mod["main"].with_attr("global_symbol", name), KernelSpec(name, params, threads, local)


def _attempt(step: Any) -> bool:
    try:
        step()
        return True
    except Exception:  # noqa: BLE001 - ScheduleError: this primitive does not apply
        return False


_SIGNATURE = re.compile(r"__kernel\s+void\s+(\w+)\s*\(([^)]*)\)\s*\{")


def generate(funcs: dict[str, Any]) -> tuple[str, dict[str, list[str]]]:
    """OpenCL C for scheduled functions, and each kernel's argument buffer names in call order."""
    import tvm

    mod = tvm.IRModule(funcs)
    try:
        ex = tvm.compile(mod, target=tvm.target.Target({"kind": "opencl"}))
    except Exception as e:  # noqa: BLE001 - report TVM's failure as ours
        raise LpdcUnsupportedError(f"TVM could not generate OpenCL: {str(e).strip().splitlines()[0][:300]}") from e
    src = ex.mod.imports[0].inspect_source("cl")
    order: dict[str, list[str]] = {}
    for m in _SIGNATURE.finditer(src):
        kname = m.group(1)
        base = kname[: -len("_kernel")] if kname.endswith("_kernel") else kname
        order[base] = [re.sub(r"_ptr$", "", a.split()[-1]) for a in m.group(2).split(",") if a.strip()]
    missing = sorted(set(funcs) - set(order))
    if missing or len(order) != len(funcs):
        raise LpdcUnsupportedError(f"TVM emitted no single kernel for {missing[:3]}")
    return src, order
