"""FFT convolution via the convolution theorem (scipy.fft).

The padded input and the (dilated, flipped) kernel are transformed at a fast FFT size covering
the padded input; per frequency the channel sum is a complex GEMM (F, N, C) @ (F, C, O); the
inverse transform gives the full stride-1 correlation, from which the valid window is cut and
subsampled by the stride. Kernel spectra are computed once per input size and cached.
Circular wrap-around never reaches the valid window because the FFT size is at least the padded
input size. Ungrouped, kernels of 3x3 and larger (a 1x1 FFT convolution is pure overhead), and
only while the cached kernel spectrum stays small (it is O*C*F complex numbers).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

from .base import ConvSpec, Primitive, packed, register

_SPECTRUM_LIMIT = 64 << 20  # bytes of cached kernel spectrum allowed per layer


def _fft_shape(s: ConvSpec) -> tuple[int, int]:
    return sfft.next_fast_len(s.hp, real=True), sfft.next_fast_len(s.wp, real=True)


def _freqs(s: ConvSpec) -> int:
    fh, fw = _fft_shape(s)
    return fh * (fw // 2 + 1)


def _complex_bytes(s: ConvSpec) -> int:
    return 2 * s.itemsize


def _applies(s: ConvSpec) -> bool:
    return (s.is_float and s.group == 1 and s.kh * s.kw >= 9
            and s.o * s.c * _freqs(s) * _complex_bytes(s) <= _SPECTRUM_LIMIT)


def _workspace(s: ConvSpec) -> int:
    fh, fw = _fft_shape(s)
    return ((s.n * s.c + s.o * s.c + s.n * s.o) * _freqs(s) * _complex_bytes(s)
            + s.n * s.o * fh * fw * s.itemsize)


def _flops(s: ConvSpec) -> float:
    fh, fw = _fft_shape(s)
    per_plane = 2.5 * fh * fw * np.log2(max(fh * fw, 2))  # a real 2-D FFT
    return per_plane * s.n * (s.c + s.o) + 8.0 * s.n * s.o * s.c * _freqs(s)


def _traffic(s: ConvSpec) -> float:
    return s.in_bytes + 2 * _workspace(s) + s.out_bytes


def _spectrum(w: np.ndarray, s: ConvSpec, shape: tuple[int, int], cdtype: np.dtype) -> np.ndarray:
    """The kernel's spectrum as (F, C, O): dilated, flipped (correlation = flipped convolution)."""
    dh, dw = s.dilation
    k = np.zeros((s.o, s.c, dh * (s.kh - 1) + 1, dw * (s.kw - 1) + 1), w.dtype)
    k[:, :, ::dh, ::dw] = w
    spec = sfft.rfft2(k[:, :, ::-1, ::-1], s=shape)  # (O, C, fh, fw/2+1)
    return np.ascontiguousarray(spec.reshape(s.o, s.c, -1).transpose(2, 1, 0).astype(cdtype))


def _run(x: np.ndarray, w: np.ndarray, s: ConvSpec) -> np.ndarray:
    shape = _fft_shape(s)
    cdtype = np.result_type(x.dtype, np.complex64)
    pt, pl, pb, pr = s.pad
    xp = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr))) if any(s.pad) else x
    kf = packed(w, ("fft", shape, s.dilation, cdtype.str), lambda: _spectrum(w, s, shape, cdtype))
    xf = sfft.rfft2(xp, s=shape).astype(cdtype, copy=False)  # (N, C, fh, fw')
    xf = xf.reshape(s.n, s.c, -1).transpose(2, 0, 1)  # (F, N, C)
    yf = np.matmul(xf, kf)  # (F, N, O)
    yf = yf.transpose(1, 2, 0).reshape(s.n, s.o, shape[0], shape[1] // 2 + 1)
    full = sfft.irfft2(yf, s=shape)
    eh, ew = s.dilation[0] * (s.kh - 1), s.dilation[1] * (s.kw - 1)
    sh, sw = s.stride
    y = full[:, :, eh:eh + (s.ho - 1) * sh + 1:sh, ew:ew + (s.wo - 1) * sw + 1:sw]
    return np.ascontiguousarray(y, dtype=x.dtype)


FFT = register(Primitive(
    "fft", "conv", "fft", "NCHW", "NCHW", applies=_applies, run=_run,
    workspace=_workspace, flops=_flops, traffic=_traffic, calls=lambda s: 6, efficiency=0.15,
    exact=False, doc="FFT convolution: complex GEMM per frequency (NCHW)"))
