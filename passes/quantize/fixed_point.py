"""Dynamic fixed point: search the integer/fractional split [IL.FL] of a W-bit format per tensor.

For a bit width W the search tries every FL from "no value saturates" up to a few bits finer (which
saturates outliers but rounds the bulk more finely) and keeps the FL with the least mean squared
error on the samples (weights themselves, or calibration samples of an activation):
    err(FL) = mean((x - clamp(round(x * 2**FL), -2**(W-1), 2**(W-1) - 1) * 2**-FL)**2)
Ties go to the smaller FL (no saturation). FL is kept in [0, 32]: the IR's fxS_F dtypes have no
negative fractional lengths, so tensors far above 2**(W-1) saturate at small widths; the sensitivity
analysis sees that as error and gives such tensors more bits.
"""

from __future__ import annotations

import math

import numpy as np

from .schemes import QFormat, fixed_format

MAX_FRAC = 32
EXTRA_FRAC = 4  # how many bits finer than "no saturation" the search looks


def frac_window(absmax: float, bits: int) -> range:
    """Candidate FLs for values up to `absmax` at `bits` bits."""
    if not math.isfinite(absmax) or absmax <= 0:
        top = min(bits - 1, MAX_FRAC)
        return range(top, top + 1)
    # FL such that absmax <= (2**(W-1) - 1) * 2**-FL, i.e. nothing saturates.
    no_sat = math.floor(math.log2((2 ** (bits - 1) - 1) / absmax))
    lo = min(max(no_sat, 0), MAX_FRAC)
    return range(lo, min(no_sat + EXTRA_FRAC, MAX_FRAC) + 1) if no_sat + EXTRA_FRAC >= lo else range(lo, lo + 1)


def quant_error(x: np.ndarray, fmt: QFormat) -> float:
    """Mean squared error of representing `x` in `fmt`."""
    x = np.asarray(x, np.float64)
    return float(np.mean((x - fmt.fake(x)) ** 2)) if x.size else 0.0


def best_frac(samples: np.ndarray, bits: int) -> int:
    """The FL with the least squared error on `samples` at `bits` bits (see the module docstring)."""
    x = np.asarray(samples, np.float64).ravel()
    absmax = float(np.max(np.abs(x))) if x.size else 0.0
    best, best_err = None, math.inf
    for frac in frac_window(absmax, bits):
        err = quant_error(x, fixed_format(bits, frac))
        if err < best_err * (1 - 1e-12):  # strictly better: ties keep the smaller FL
            best, best_err = frac, err
    assert best is not None
    return best


def fixed_for(samples: np.ndarray | None, bits: int, frac: int | None = None) -> QFormat:
    """A fixed-point format for `samples`: FL as given, else searched."""
    if frac is None:
        if samples is None:
            raise ValueError("fixed_for needs samples or a fractional length")
        frac = best_frac(samples, bits)
    return fixed_format(bits, frac)
