"""ApproxExecutable: the NumPy reference interpreter with effort knobs on chosen conv/fc layers.

    exe = ApproxExecutable(graph, EffortConfig({"conv2": KnobSettings(spet_threshold=0.0)}))
    outputs = exe.run({"x": images})
    exe.counts["conv2"].macs, exe.total().reduction

Layers whose knobs are all off keep the reference kernel itself, so a config with every knob off
gives bit-identical outputs. Every conv and fully_connected layer is counted (exact layers at their
dense MACs), so `total()` covers all the dot-product work of the model. `force_engine=True` runs
every supported conv/fc layer through the approximate engine even with its knobs off: the like-for-
like baseline when timing the knobs (the engine evaluates neuron by neuron, the reference uses one
BLAS matrix product per layer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from ....errors import LpdcError, LpdcUnsupportedError
from ....ir import Graph, Node
from ..executable import Executable
from .counters import LayerCounts, total
from .knobs import EffortConfig, KnobSettings
from .layers import DOT_OPS, approx_conv, approx_fc, check_support

log = logging.getLogger(__name__)
OFF = KnobSettings()
Kernel = Callable[[Node, list, Graph], list]


class ApproxExecutable(Executable):
    """A compiled graph whose conv/fc layers listed in `config` run with their effort knobs."""

    def __init__(self, graph: Graph, config: EffortConfig | None = None, *, force_engine: bool = False) -> None:
        super().__init__(graph)
        self.config = EffortConfig(config or {})
        nodes = {n.name: n for n in graph.nodes}
        for name, knobs in self.config.items():
            if name not in nodes:
                dots = [n.name for n in graph.nodes if n.op in DOT_OPS]
                raise LpdcError(f"effort config names layer {name!r}, which is not in the graph "
                                f"(conv/fc layers: {', '.join(dots) or 'none'})", where=f"graph '{graph.name}'")
            if knobs.active:
                check_support(nodes[name], knobs)
        self.counts: dict[str, LayerCounts] = {}
        for i, node in enumerate(graph.nodes):
            if node.op in DOT_OPS:
                self.counts[node.name] = LayerCounts()
                self._kernels[i] = self._kernel_for(node, self._kernels[i], force_engine)

    def _kernel_for(self, node: Node, reference: Kernel, force_engine: bool) -> Kernel:
        knobs = self.config.get(node.name, OFF)
        counts = self.counts[node.name]
        if not knobs.active and force_engine:
            try:
                check_support(node, knobs)
            except LpdcUnsupportedError as e:
                log.info("%s: runs the reference kernel (%s)", node.name, e.message)
            else:
                return _engine(knobs, counts)
        if knobs.active:
            return _engine(knobs, counts)
        return _counted(reference, _dense_macs(node), counts)

    def reset_counts(self) -> None:
        for c in self.counts.values():
            c.__init__()

    def total(self) -> LayerCounts:
        """Counts summed over every conv/fc layer since the last reset."""
        return total(self.counts)


def _engine(knobs: KnobSettings, counts: LayerCounts) -> Kernel:
    def run(node: Node, ins: list, graph: Graph) -> list:
        fn = approx_conv if node.op == "conv" else approx_fc
        return [fn(node, ins, knobs, counts)]
    return run


def _counted(reference: Kernel, macs: int, counts: LayerCounts) -> Kernel:
    def run(node: Node, ins: list, graph: Graph) -> list:
        out = reference(node, ins, graph)
        counts.dense_macs += macs
        counts.macs += macs
        counts.neurons += int(np.asarray(out[0]).size)
        return out
    return run


def _dense_macs(node: Node) -> int:
    """The layer's multiply-accumulates per run, from the op registry's operation count."""
    flops = node.schema.flops([v and v.type for v in node.inputs], [v.type for v in node.outputs], node.attrs)
    return int(flops.mac)
