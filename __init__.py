"""lpdc: a low-power DNN compiler (typed graph IR, passes, PBQP primitive selection, backends)."""

from .api import Target, compile, load, save
from .errors import LpdcError
from .ir import Graph, TensorType, parse
from .passes.quantize import quantize
from .passes.sparsify import prune

__version__ = "0.1.0"
__all__ = ["LpdcError", "Graph", "TensorType", "Target", "compile", "load", "save", "parse", "quantize", "prune",
           "__version__"]
