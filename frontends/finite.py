"""The frontends' policy for NaN and infinite weights: accepted, with one warning per model.

Why accept: a real network can carry an inf on purpose (a clip bound, a masked logit), and
refusing would make such models unloadable. Why warn: a NaN weight is almost always a corrupt or
badly exported file, and the user must hear about it before trusting any output. The warning
names the tensors (first few) and the number of non-finite values in each.
"""

from __future__ import annotations

import warnings

import numpy as np

SHOWN = 5  # tensors named in the warning


def count_nonfinite(arr: np.ndarray) -> int:
    """NaN and +-inf values in a floating-point array (0 for integer arrays)."""
    if arr.dtype.kind not in "fc":
        return 0
    return int(arr.size - np.count_nonzero(np.isfinite(arr)))


def warn_nonfinite(found: list[tuple[str, int]], where: str, stacklevel: int = 3) -> None:
    """One RuntimeWarning listing the tensors in `found` ((name, count) pairs), if any."""
    if not found:
        return
    shown = ", ".join(f"'{n}' ({c})" for n, c in found[:SHOWN]) + (" ..." if len(found) > SHOWN else "")
    warnings.warn(f"{where}: {len(found)} weight tensor(s) hold NaN or infinite values (accepted; outputs may be "
                  f"NaN/inf): {shown}", RuntimeWarning, stacklevel=stacklevel)
