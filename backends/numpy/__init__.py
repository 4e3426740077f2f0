"""The NumPy reference backend: the oracle every other backend and pass is checked against."""

from .executable import Executable, NodeTiming, compile_numpy

__all__ = ["Executable", "NodeTiming", "compile_numpy"]
