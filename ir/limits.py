"""Resource limits checked before anything is allocated: tensor elements, weight bytes, node count,
nesting depth. Defaults suit real CNNs with a wide margin; `override(...)` changes them for a block
(frontends and the CLI pass user flags through it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

from ..errors import LpdcLimitError


@dataclass(frozen=True)
class Limits:
    """Upper bounds on what a model may declare."""

    max_elements: int = 2**31  # elements of any one tensor
    max_weight_bytes: int = 8 * 2**30  # all constants together
    max_nodes: int = 200_000  # nodes (layers) in one graph
    max_depth: int = 100  # nesting depth of structured input (prototxt blocks, JSON)


_DEFAULT = Limits()
_CURRENT: ContextVar[Limits | None] = ContextVar("lpdc_limits", default=None)


def current() -> Limits:
    return _CURRENT.get() or _DEFAULT


@contextmanager
def override(**changes: int) -> Iterator[Limits]:
    """Use other limits inside a `with` block: `with override(max_elements=2**20): ...`."""
    token = _CURRENT.set(replace(current(), **changes))
    try:
        yield current()
    finally:
        _CURRENT.reset(token)


def check_elements(count: int, what: str, where: str | None = None) -> None:
    limit = current().max_elements
    if count > limit:
        raise LpdcLimitError(f"{what} has {count} elements, over the limit of {limit} (raise max_elements to allow)",
                             where=where)


def check_nodes(count: int, where: str | None = None) -> None:
    limit = current().max_nodes
    if count > limit:
        raise LpdcLimitError(f"{count} nodes, over the limit of {limit} (raise max_nodes to allow)", where=where)


def check_weight_bytes(count: int, where: str | None = None) -> None:
    limit = current().max_weight_bytes
    if count > limit:
        raise LpdcLimitError(f"{count} bytes of weights, over the limit of {limit} (raise max_weight_bytes to allow)",
                             where=where)
