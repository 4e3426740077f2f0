"""Naive loop implementations written independently of lpdc's kernels: the tests' oracle."""

from __future__ import annotations

import numpy as np


def conv2d(x, w, b, stride, pad, dilation, group):
    """Direct 7-loop convolution (loops over output pixels, dot over each window), NCHW / OIHW."""
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    pt, pl, pb, pr = pad
    ho = (h + pt + pb - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    wo = (wd + pl + pr - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, ho, wo), np.float64)
    og = o // group
    for b_ in range(n):
        for oc in range(o):
            g = oc // og
            for i in range(ho):
                for j in range(wo):
                    acc = 0.0
                    for ci in range(cg):
                        for ki in range(kh):
                            for kj in range(kw):
                                y = i * stride[0] - pt + ki * dilation[0]
                                z = j * stride[1] - pl + kj * dilation[1]
                                if 0 <= y < h and 0 <= z < wd:
                                    acc += float(x[b_, g * cg + ci, y, z]) * float(w[oc, ci, ki, kj])
                    out[b_, oc, i, j] = acc + (0.0 if b is None else float(b[oc]))
    return out


def pool2d(x, kind, kernel, stride, pad, ceil_mode, count_include_pad, out_hw):
    """Loop pooling: max ignores padding; avg divides by the window clipped to the padded input
    (count_include_pad) or by the real elements it covers."""
    n, c, h, w = x.shape
    pt, pl, pb, pr = pad
    ho, wo = out_hw
    out = np.zeros((n, c, ho, wo), np.float64)
    for b in range(n):
        for ch in range(c):
            for i in range(ho):
                for j in range(wo):
                    y0, z0 = i * stride[0] - pt, j * stride[1] - pl
                    vals, padded = [], 0
                    for ki in range(kernel[0]):
                        for kj in range(kernel[1]):
                            y, z = y0 + ki, z0 + kj
                            if 0 <= y < h and 0 <= z < w:
                                vals.append(float(x[b, ch, y, z]))
                            if -pt <= y < h + pb and -pl <= z < w + pr:
                                padded += 1
                    if kind == "max":
                        out[b, ch, i, j] = max(vals)
                    else:
                        out[b, ch, i, j] = sum(vals) / (padded if count_include_pad else len(vals))
    return out


def pool_out(size, k, s, p0, p1, ceil_mode):
    """Output size by the Caffe/ONNX rule, computed with floats as the papers write it."""
    import math

    f = math.ceil if ceil_mode else math.floor
    out = int(f((size + p0 + p1 - k) / s)) + 1
    if ceil_mode and (out - 1) * s >= size + p0:
        out -= 1
    return out


def gemm(a, b, c, alpha, beta, trans_a, trans_b):
    A = a.T if trans_a else a
    B = b.T if trans_b else b
    m, k = A.shape
    n = B.shape[1]
    out = np.zeros((m, n), np.float64)
    for i in range(m):
        for j in range(n):
            out[i, j] = alpha * sum(float(A[i, t]) * float(B[t, j]) for t in range(k))
    if c is not None:
        out += beta * np.broadcast_to(c, (m, n))
    return out


def conv_transpose2d(x, w, stride, pad, dilation, group, output_padding):
    """Scatter loop: every input pixel adds its weighted kernel into the output."""
    n, c, h, wd = x.shape
    cin, og, kh, kw = w.shape
    pt, pl, pb, pr = pad
    ho = (h - 1) * stride[0] - pt - pb + dilation[0] * (kh - 1) + 1 + output_padding[0]
    wo = (wd - 1) * stride[1] - pl - pr + dilation[1] * (kw - 1) + 1 + output_padding[1]
    out = np.zeros((n, og * group, ho, wo), np.float64)
    cg = c // group
    for b in range(n):
        for ci in range(c):
            g = ci // cg
            for i in range(h):
                for j in range(wd):
                    for oc in range(og):
                        for ki in range(kh):
                            for kj in range(kw):
                                y = i * stride[0] - pt + ki * dilation[0]
                                z = j * stride[1] - pl + kj * dilation[1]
                                if 0 <= y < ho and 0 <= z < wo:
                                    out[b, g * og + oc, y, z] += float(x[b, ci, i, j]) * float(w[ci, oc, ki, kj])
    return out
