"""Run a graph's AArch64 (Cortex-A72/A53) TVM kernels under qemu-user, with no TVM runtime.

The a72/a53 builds cannot run on the host, so their numerics are checked here: the graph's
kernels are built single-threaded (a parallel kernel needs the runtime's thread pool), the
object file is linked statically with one generated C program that reads every input and packed
weight from raw .bin files, calls the kernels in graph order with DLTensors (4-D activations
NHWC, as executable.py stores them) and writes the graph outputs, and `qemu-aarch64` runs it.
Needs Debian's `gcc-aarch64-linux-gnu` and `qemu-user`; nodes that fall back to NumPy make the
one-program harness impossible, so such graphs are refused.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import LpdcExecutionError, LpdcTargetError, LpdcUnsupportedError
from ...ir import Graph, Value
from ..numpy.executable import Executable as NumpyExecutable
from .build import Plan, build_module, plan_graph
from .lower import is_act4, nhwc_shape
from .target import tvm_target

CROSS_GCC = "aarch64-linux-gnu-gcc"
QEMU = "qemu-aarch64"
_CPU = {"a72": "cortex-a72", "a53": "cortex-a53"}

_PRELUDE = r"""#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <dlpack/dlpack.h>

typedef struct { int32_t type_index; uint32_t zero_padding; void* v_ptr; } TVMFFIAny;  /* tvm/ffi/c_api.h */
enum { kTVMFFIDLTensorPtr = 7 };

/* The TVM runtime entry points serial kernels reach: error reports, and scratch buffers (padding
   stages) through function pointers the object declares weak and the runtime's loader would fill. */
void TVMFFIErrorSetRaisedFromCStrParts(const char* kind, const char** parts, int n) {
  fprintf(stderr, "%s:", kind);
  for (int i = 0; i < n; ++i) fprintf(stderr, " %s", parts[i]);
  fprintf(stderr, "\n");
}
static void* alloc_workspace(int dev, int id, uint64_t nbytes, int code, int bits) {
  void* p = NULL;
  return posix_memalign(&p, 64, nbytes ? nbytes : 64) ? NULL : p;
}
static int free_workspace(int dev, int id, void* p) { free(p); return 0; }
void* (*__TVMBackendAllocWorkspace)(int, int, uint64_t, int, int) = alloc_workspace;
int (*__TVMBackendFreeWorkspace)(int, int, void*) = free_workspace;

static void* buffer(DLTensor* t, const char* path) {
  size_t n = t->dtype.bits / 8;
  for (int i = 0; i < t->ndim; ++i) n *= (size_t)t->shape[i];
  if (posix_memalign(&t->data, 64, n ? n : 64)) { fprintf(stderr, "out of memory\n"); exit(2); }
  if (path) {
    FILE* f = fopen(path, "rb");
    if (!f || fread(t->data, 1, n, f) != n) { fprintf(stderr, "cannot read %s\n", path); exit(2); }
    fclose(f);
  }
  return t->data;
}
static void save(const DLTensor* t, const char* path) {
  size_t n = t->dtype.bits / 8;
  for (int i = 0; i < t->ndim; ++i) n *= (size_t)t->shape[i];
  FILE* f = fopen(path, "wb");
  if (!f || fwrite(t->data, 1, n, f) != n) { fprintf(stderr, "cannot write %s\n", path); exit(2); }
  fclose(f);
}
static void check(int rc, const char* node) {
  if (rc != 0) { fprintf(stderr, "kernel of node '%s' failed (%d)\n", node, rc); exit(3); }
}
#define ARG(t) {kTVMFFIDLTensorPtr, 0, &(t)}
"""


def cross_build(graph: Graph, device: str = "a72", knobs: dict[str, Any] | None = None,
                fuse_depthwise: bool = True) -> tuple[Plan, Any]:
    """Plan and build `graph` (already optimised) for a72/a53 with serial loops: (plan, TVM Executable).
    The kernels are compile_tvm's for the device (`fuse_depthwise` as there).

    Raises LpdcUnsupportedError when a node has no TVM kernel (it would need the NumPy fallback).
    """
    if device not in _CPU:
        raise LpdcTargetError(f"qemu runs the a72 or a53 builds, not {device!r}", where=device)
    tt = tvm_target(device)
    plan = plan_graph(graph, tt, knobs, fuse_depthwise=fuse_depthwise)
    if plan.fallbacks:
        raise LpdcUnsupportedError("the qemu harness runs TVM kernels only; these nodes would run on NumPy: "
                                   + ", ".join(f"{k} ({v})" for k, v in sorted(plan.fallbacks.items())),
                                   where=graph.name)
    return plan, build_module(plan, tt, parallel=False)


def run_under_qemu(graph: Graph, inputs: Mapping[str, np.ndarray], device: str = "a72",
                   knobs: dict[str, Any] | None = None, timeout: float = 120.0,
                   fuse_depthwise: bool = True) -> dict[str, np.ndarray]:
    """Run optimised `graph` on `inputs` as AArch64 code under qemu; returns {output name: array} (NCHW)."""
    missing = [t for t in (CROSS_GCC, QEMU) if shutil.which(t) is None]
    if missing:
        raise LpdcTargetError(f"running AArch64 kernels needs {' and '.join(missing)} "
                              "(Debian: apt-get install gcc-aarch64-linux-gnu qemu-user)", where=device)
    feeds = NumpyExecutable(graph)._bind_inputs(inputs)  # the reference's input checks and dtypes
    plan, lib = cross_build(graph, device, knobs, fuse_depthwise)
    with tempfile.TemporaryDirectory(prefix="lpdc_qemu_") as tmp:
        d = Path(tmp)
        src, outs = harness(graph, plan, feeds, d)
        (d / "main.c").write_text(src)
        lib.mod.write_to_file(str(d / "kernels.o"))
        _run([CROSS_GCC, "-O2", "-static", f"-I{_dlpack_include()}", "main.c", "kernels.o", "-lm", "-o", "main"],
             d, timeout, "linking the AArch64 harness", LpdcTargetError)
        _run([QEMU, "-cpu", _CPU[device], "./main"], d, timeout, "the AArch64 kernels under qemu",
             LpdcExecutionError)
        result = {}
        for v, (path, shape) in outs.items():
            a = np.fromfile(d / path, np.float32).reshape(shape)
            result[v.name] = a.transpose(0, 3, 1, 2).copy() if is_act4(v) else a
        return result


def harness(graph: Graph, plan: Plan, feeds: Mapping[Value, np.ndarray],
            d: Path) -> tuple[str, dict[Value, tuple[str, tuple[int, ...]]]]:
    """The C program for `plan`; writes the .bin files it reads into `d`.

    Returns (C source, {graph output: (file it writes, stored shape)}).
    """
    decls: list[str] = []
    init: list[str] = []
    body: list[str] = []
    tensors: dict[Any, str] = {}  # Value or id(ndarray) -> C tensor name

    def tensor(shape: tuple[int, ...], data: np.ndarray | None) -> str:
        t = f"t{len(decls)}"
        dims = ", ".join(str(int(s)) for s in shape) or "1"
        # bound index arrays (sparse FC columns) keep their integer type; everything else is f32
        kind = data.dtype if data is not None and data.dtype.kind in "iu" else np.dtype(np.float32)
        code = {"f": "kDLFloat", "i": "kDLInt", "u": "kDLUInt"}[kind.kind]
        decls.append(f"static int64_t {t}_shape[] = {{{dims}}};\n"
                     f"static DLTensor {t} = {{0, {{kDLCPU, 0}}, {len(shape)}, {{{code}, {kind.itemsize * 8}, 1}}, "
                     f"{t}_shape, 0, 0}};")
        path = "NULL"
        if data is not None:
            np.ascontiguousarray(data, kind).tofile(d / f"{t}.bin")
            path = f'"{t}.bin"'
        init.append(f"  buffer(&{t}, {path});")
        return t

    def value(v: Value, nhwc: bool = True) -> str:
        key = v if nhwc or not is_act4(v) else (v, "NCHW")
        t = tensors.get(key)
        if t is None:  # a graph input or a constant read as an argument: stored as the kernel expects it
            data = feeds.get(v)
            if data is None:
                data = graph.const_data(v)
            if data is None:
                raise LpdcExecutionError(f"value %{v.name} is read before it is computed", where=graph.name)
            data = np.asarray(data, np.float32)
            if key is v:
                t = tensors[v] = tensor(nhwc_shape(v), data.transpose(0, 2, 3, 1) if is_act4(v) else data)
            else:
                t = tensors[key] = tensor(data.shape, data)
        return t

    funcs = []
    for s in plan.steps:
        assert s.func is not None  # cross_build refused fallbacks
        args = [value(a, s.reads_nhwc(i)) if isinstance(a, Value) else tensor(a.shape, a)
                for i, a in enumerate(s.args)]
        out = tensors[s.output] = tensor(nhwc_shape(s.output), None)
        args.append(out)
        if s.func not in funcs:
            funcs.append(s.func)
        arg_list = ", ".join(f"ARG({a})" for a in args)
        name = s.node.name.replace("\\", "_").replace('"', "_")
        body.append(f"  {{ TVMFFIAny a[] = {{{arg_list}}}; TVMFFIAny r = {{0, 0, 0}};\n"
                    f"    check(__tvm_ffi_{s.func}(NULL, a, {len(args)}, &r), \"{name}\"); }}")
    outs = {}
    for i, v in enumerate(graph.outputs):
        t = value(v)
        body.append(f'  save(&{t}, "out{i}.bin");')
        outs[v] = (f"out{i}.bin", nhwc_shape(v))
    protos = [f"int __tvm_ffi_{f}(void*, const TVMFFIAny*, int, TVMFFIAny*);" for f in funcs]
    src = "\n".join([_PRELUDE, *protos, *decls, "", "int main(void) {", *init, *body, "  return 0;", "}", ""])
    return src, outs


def _dlpack_include() -> str:
    from tvm_ffi import libinfo

    return str(libinfo.find_dlpack_include_path())


def _run(cmd: list[str], cwd: Path, timeout: float, what: str, error: type) -> None:
    try:
        p = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as e:
        raise error(f"{what} took more than {timeout:.0f} s", where=cmd[0]) from e
    if p.returncode != 0:
        tail = (p.stderr or p.stdout).strip()[-600:]
        raise error(f"{what} failed (exit {p.returncode}): {tail}", where=cmd[0])
