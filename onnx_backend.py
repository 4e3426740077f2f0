"""An ONNX backend (`onnx.backend.base.Backend`) that runs models on lpdc's NumPy reference
backend, so ONNX's own conformance cases can test the frontend and the kernels.

lpdc compiles static graphs: shapes come from the arrays given to `run`, and graph inputs that
feed parameter slots (a Reshape's shape, a Slice's starts, a Clip's bounds...; see
`frontends.onnx_context.STATIC_INPUTS`) are frozen into constants with the values given, then
the model is converted and run. Conversions are cached per set of frozen values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from .backends.numpy import compile_numpy
from .errors import LpdcExecutionError
from .frontends.onnx import convert_model
from .frontends.onnx_context import STATIC_INPUTS


def static_inputs(graph: onnx.GraphProto) -> set[str]:
    """Graph inputs whose values decide parameters (directly or through arithmetic, not via Shape)."""
    inits = {t.name for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input} - inits
    producer = {o: node for node in graph.node for o in node.output if o}
    todo = [node.input[i] for node in graph.node for i in STATIC_INPUTS.get(node.op_type, ())
            if i < len(node.input) and node.input[i]]
    seen: set[str] = set()
    found: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in graph_inputs:
            found.add(name)
            continue
        node = producer.get(name)
        if node is not None and node.op_type != "Shape":  # a Shape reads only the (static) shape
            todo.extend(x for x in node.input if x)
    return found


class LpdcBackendRep(BackendRep):
    """A prepared model: converted to the IR on the first run with each set of frozen inputs."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        inits = {t.name for t in model.graph.initializer}
        self.input_names = [i.name for i in model.graph.input if i.name not in inits]
        self.frozen = static_inputs(model.graph)
        self._cache: dict[tuple[Any, ...], Any] = {}

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        feed = self._feed(inputs)
        frozen = {n: np.asarray(feed[n]) for n in self.input_names if n in self.frozen}
        key = tuple((n, a.dtype.str, a.shape, a.tobytes()) for n, a in sorted(frozen.items())) + tuple(
            (n, np.shape(feed[n])) for n in self.input_names if n not in frozen)
        exe = self._cache.get(key)
        if exe is None:
            shapes = {n: list(np.shape(feed[n])) for n in self.input_names if n not in frozen}
            graph = convert_model(self.model, source=self.model.graph.name or "<model>", shapes=shapes,
                                  constants=frozen)
            exe = self._cache[key] = compile_numpy(graph)
        outs = exe.run({n: np.asarray(feed[n]) for n in exe.input_names})
        return tuple(outs[v.name] for v in exe.graph.outputs)

    def _feed(self, inputs: Any) -> dict[str, np.ndarray]:
        if isinstance(inputs, Mapping):
            return {k: _array(v) for k, v in inputs.items()}
        if not isinstance(inputs, Sequence | np.ndarray):
            inputs = [inputs]
        if len(inputs) != len(self.input_names):
            raise LpdcExecutionError(f"the model takes {len(self.input_names)} inputs "
                                     f"({', '.join(self.input_names)}), got {len(inputs)}")
        return {k: _array(v) for k, v in zip(self.input_names, inputs, strict=True)}


def _array(v: Any) -> np.ndarray:
    """Inputs may come as arrays or as TensorProtos (ONNX's test data uses both)."""
    if isinstance(v, onnx.TensorProto):
        from onnx import numpy_helper

        return numpy_helper.to_array(v)
    return np.asarray(v)


class LpdcBackend(Backend):
    """`prepare(model).run(inputs)` on lpdc's NumPy reference backend (CPU only)."""

    @classmethod
    def prepare(cls, model: onnx.ModelProto, device: str = "CPU", **kwargs: Any) -> LpdcBackendRep:
        return LpdcBackendRep(model)

    @classmethod
    def run_node(cls, node: onnx.NodeProto, inputs: Any, device: str = "CPU",
                 outputs_info: Sequence[tuple[np.dtype, tuple[int, ...]]] | None = None,
                 **kwargs: Any) -> tuple[np.ndarray, ...]:
        """Run one node on the given inputs (wrapped in a one-node model)."""
        from onnx import helper

        arrays = [np.asarray(a) for a in inputs]
        ins = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
               for n, a in zip([n for n in node.input if n], arrays, strict=False)]
        outs = [helper.make_empty_tensor_value_info(n) for n in node.output if n]
        opset = int(kwargs.get("opset_version", onnx.defs.onnx_opset_version()))
        model = helper.make_model(helper.make_graph([node], "run_node", ins, outs),
                                  opset_imports=[helper.make_opsetid("", opset)])
        return cls.prepare(model, device).run(arrays)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device.upper() == "CPU"


prepare = LpdcBackend.prepare
run_model = LpdcBackend.run_model
run_node = LpdcBackend.run_node
supports_device = LpdcBackend.supports_device
