"""NumPy reference kernels, one per IR op, found by op name.

A kernel is `fn(node, inputs, graph) -> list[np.ndarray]`: `inputs` holds one array (or None for an
absent optional input) per node input. Kernels are small and obviously correct: they define what
each op means.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Kernel = Callable[..., list[np.ndarray]]
KERNELS: dict[str, Kernel] = {}


def kernel(*ops: str) -> Callable[[Kernel], Kernel]:
    """Register `fn` as the reference kernel of each op in `ops`."""

    def deco(fn: Kernel) -> Kernel:
        for op in ops:
            if op in KERNELS:
                raise ValueError(f"kernel for {op!r} registered twice")
            KERNELS[op] = fn
        return fn

    return deco


def get_kernel(op: str) -> Kernel | None:
    _load()
    return KERNELS.get(op)


def _load() -> None:
    from . import activation, detection, elementwise, nn, norm, pool, quant, resize, tensor  # noqa: F401
