"""Shared helpers for the fuzz tests: a per-input time bound, the load-or-LpdcError contract, and
peak traced memory of a call."""

from __future__ import annotations

import signal
import time
import tracemalloc
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from lpdc.errors import LpdcError

PER_INPUT_SECONDS = 10  # generous on a loaded 2-core machine; a hang would run forever


class FuzzTimeout(Exception):
    """An input took longer than its time bound."""


@contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Raise FuzzTimeout in the main thread when the block runs past `seconds` (SIGALRM)."""
    def on_alarm(signum: int, frame: Any) -> None:
        raise FuzzTimeout(f"input took more than {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def loads_or_lpdc_error(load: Callable[[], Any]) -> str:
    """Run `load`: it must return or raise an LpdcError with a message, within the time bound.
    Returns "ok" or the error class name (for statistics)."""
    try:
        with time_bound(PER_INPUT_SECONDS), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            load()
        return "ok"
    except LpdcError as e:
        assert str(e).strip(), "an LpdcError without a message"
        return type(e).__name__
    except FuzzTimeout as e:
        pytest.fail(f"hang: {e}")
    except RecursionError:
        pytest.fail("unbounded recursion on nested input")


def measured(fn: Callable[[], Any]) -> tuple[BaseException | None, float, int]:
    """(exception raised or None, seconds, peak traced bytes) of calling `fn`."""
    tracemalloc.start()
    t0 = time.perf_counter()
    err: BaseException | None = None
    try:
        fn()
    except Exception as e:  # the caller asserts on its type and message
        err = e
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return err, seconds, peak
