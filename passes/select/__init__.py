"""Selection passes: choose each node's primitive, layout and device (PBQP)."""

from . import select_primitives  # noqa: F401  (registers the "select-primitives" pass)
