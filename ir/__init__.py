"""The typed graph IR: types, values, nodes, graphs, the op registry and the textual form."""

from . import dtypes
from .feeds import random_inputs
from .graph import Graph, Node, Value
from .registry import FlopCount, OpSchema, all_ops, get_op
from .text import parse, print_graph, print_type
from .types import QuantParams, TensorType
from .verify import verify

__all__ = ["Graph", "Node", "Value", "TensorType", "QuantParams", "FlopCount", "OpSchema", "all_ops", "get_op",
           "parse", "print_graph", "print_type", "random_inputs", "verify", "dtypes"]
