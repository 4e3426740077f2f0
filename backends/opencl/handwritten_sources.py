"""OpenCL C templates for handwritten.py: a strided gather and a row softmax.

Shapes and strides are baked in as integer literals, so each distinct node gets its own small
kernel that the driver folds fully. Only OpenCL 1.2 and float arithmetic (no fp64) is used,
which Mali drivers accept. Indices are `int`: the caller refuses tensors of 2**31 elements.
"""

from __future__ import annotations

import hashlib

Dims = list[tuple[int, int]]  # (extent, stride) per axis, outermost first

_HEAD = "__kernel void {name}(__global const float* restrict x, __global float* restrict y)"


def coalesce(dims: Dims) -> Dims:
    """Drop unit axes and merge neighbours that are contiguous with each other (fewer divisions)."""
    out: Dims = []
    for e, s in dims:
        if e == 1:
            continue
        if out and out[-1][1] == s * e:
            out[-1] = (out[-1][0] * e, s)
        else:
            out.append((e, s))
    return out


def _unravel(src: str, dims: Dims, base: int) -> list[str]:
    """Lines setting `i = base + sum(coord_k * stride_k)` where the coords unravel `src` over `dims`."""
    lines = [f"r = {src};", f"i = {base};"]
    for e, s in reversed(dims[1:]):
        lines.append(f"i += (r % {e}) * {s}; r /= {e};")
    if dims:
        lines.append(f"i += r * {dims[0][1]};")
    return lines


def _is_identity(dims: Dims, base: int) -> bool:
    return base == 0 and (not dims or (len(dims) == 1 and dims[0][1] == 1))


def _named(kind: str, body: str) -> tuple[str, str]:
    """(source, name): the name carries a digest of the source, so distinct kernels never clash."""
    name = f"lpdc_{kind}_{hashlib.sha1(body.encode()).hexdigest()[:12]}"
    return body.replace("{name}", name), name


def gather_source(total: int, out_dims: Dims, base: int, in_dims: Dims | None) -> tuple[str, str]:
    """y[g] = x[base + off(g)]: unravel g over the output's stored shape with `out_dims` strides;
    with `in_dims`, that result is a logical (C-order) flat index that is unravelled again over the
    input's logical shape with its stored strides (reshapes of NHWC-stored values)."""
    out_dims = coalesce(out_dims)
    in_dims = None if in_dims is None else coalesce(in_dims)
    lines = ["int i = gid, r;"]
    if not _is_identity(out_dims, base if in_dims is None else 0):
        lines += _unravel("gid", out_dims, base if in_dims is None else 0)
    if in_dims is not None and not _is_identity(in_dims, base):
        lines += _unravel("i", in_dims, base)
    body = "\n    ".join(lines)
    src = (
        _HEAD + " {\n"
        "    const int gid = (int)get_global_id(0);\n"
        f"    if (gid >= {total}) return;\n"
        f"    {body}\n"
        "    y[gid] = x[i];\n"
        "}\n"
    )
    return _named("gather", src)


def softmax_source(rows: int, k: int, inner: int, log: bool) -> tuple[str, str]:
    """One work-item per reduced row: row g has `k` elements `inner` apart, starting at
    (g / inner) * k * inner + g % inner. Max-subtracted like the NumPy reference: softmax is
    exp(z) / sum, log_softmax is z - log(sum)."""
    if log:
        tail = (
            "    const float ls = log(s);\n"
            f"    for (int j = 0; j < {k}; ++j) y[b + j * {inner}] = (x[b + j * {inner}] - m) - ls;\n"
        )
        acc = f"    for (int j = 0; j < {k}; ++j) s += exp(x[b + j * {inner}] - m);\n"
    else:
        tail = f"    for (int j = 0; j < {k}; ++j) y[b + j * {inner}] = y[b + j * {inner}] / s;\n"
        acc = (
            f"    for (int j = 0; j < {k}; ++j) {{\n"
            f"        const float e = exp(x[b + j * {inner}] - m);\n"
            f"        y[b + j * {inner}] = e;\n"
            "        s += e;\n"
            "    }\n"
        )
    src = (
        _HEAD + " {\n"
        "    const int gid = (int)get_global_id(0);\n"
        f"    if (gid >= {rows}) return;\n"
        f"    const int b = (gid / {inner}) * {k * inner} + gid % {inner};\n"
        "    float m = x[b];\n"
        f"    for (int j = 1; j < {k}; ++j) m = fmax(m, x[b + j * {inner}]);\n"
        "    float s = 0.0f;\n"
        f"{acc}{tail}"
        "}\n"
    )
    return _named("logsoftmax" if log else "softmax", src)
