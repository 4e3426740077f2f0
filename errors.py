"""One exception family for everything lpdc reports to users.

Every error a user can cause (a bad file, an ill-typed graph, an unknown op or target) is an
`LpdcError`; messages name the file, node, layer or op concerned so the user can find it.
"""

from __future__ import annotations


class LpdcError(Exception):
    """Base class of every error lpdc raises on purpose.

    `where` (a file, node or layer name) is prepended to the message when given.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        self.message = message
        super().__init__(f"{where}: {message}" if where else message)


class LpdcParseError(LpdcError):
    """A model file or textual IR could not be read (malformed, truncated, wrong format)."""


class LpdcTypeError(LpdcError):
    """Types or shapes do not fit an op (shape inference or verification failed)."""


class LpdcGraphError(LpdcError):
    """The graph's structure is invalid: dangling values, cycles, duplicate names."""


class LpdcUnsupportedError(LpdcError):
    """An op, layer, attribute or feature is not supported."""


class LpdcTargetError(LpdcError):
    """An unknown target or device name, or a target whose backend cannot run here."""


class LpdcExecutionError(LpdcError):
    """Running a compiled graph failed (bad inputs, or a kernel failed on a node)."""


class LpdcPassError(LpdcError):
    """A pass failed or left an invalid graph; the message names the pass and those before it."""


class LpdcLimitError(LpdcError):
    """A resource limit (tensor elements, weight bytes, node count, nesting) would be exceeded."""
