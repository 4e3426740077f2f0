"""Which measurements a model needs: the (layer signature, choice) pairs its plan will be priced by.

NumPy target: exactly the pairs the select-primitives pass looks up. The pass's own PBQP build
runs once with a cost source that answers nothing and records every question (each layer with
more than one choice, for every choice, and every layout conversion on every edge), so the
campaign measures what the selection will read, no more and no less. Each pair carries a
payload from which a worker process rebuilds the layer alone: the node as textual IR in a
one-node graph, small constants verbatim, big ones (weights) as shape, dtype and density, to be
filled with random data (the timing does not depend on the values, only on their sparsity).

TVM targets (x86, a72, a53): each conv / fully_connected layer's geometry (`ConvSpec` /
`FCSpec`) with the first `trials` kernel configs of `tvm_kind.config_space`. On request
(`ms_model_work`), also a meta_schedule search for each of the K heaviest distinct layers: a
search costs minutes where a hand schedule costs seconds, so it goes where the FLOPs are.

Signatures repeat within a model (ResNet's identical blocks) and across models; `model_work`
keeps one entry per (signature, choice).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import LpdcError, LpdcTargetError, LpdcUnsupportedError
from ..ir import Graph, Node, dtypes
from .keys import CONVERT, Choice, Signature

__all__ = ["Work", "heaviest_layers", "model_work", "ms_devices", "ms_model_work", "numpy_work", "optimise", "tvm_work"]

log = logging.getLogger(__name__)

SMALL_CONST = 4096  # constants up to this many elements travel verbatim; bigger ones are random


@dataclass(frozen=True)
class Work:
    """One measurement a model needs, with what a worker needs to rebuild the layer."""

    kind: str  # "numpy" | "tvm" | "meta_schedule"
    signature: Signature
    choice: Choice
    payload: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.signature.key, self.choice.key)


def optimise(graph: Graph, opt_level: int = 2) -> Graph:
    """The graph selection sees: a copy after the opt level's folding and fusion passes."""
    from ..passes.manager import PassManager, pipeline

    names = [n for n in pipeline(opt_level) if n != "select-primitives"]
    return PassManager(names).run(graph.copy())


class _Recorder:
    """A cost source that knows nothing and remembers every question, in order."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], None] = {}

    def lookup(self, signature: str, choice: str) -> float | None:
        self.calls.setdefault((signature, choice), None)
        return None


def _scratch_payload(node: Node, graph: Graph) -> dict[str, Any]:
    """`node` alone in a graph, as textual IR plus the recipe of its constants."""
    g = Graph("layer")
    ins = []
    params: dict[str, Any] = {}
    for i, v in enumerate(node.inputs):
        if v is None:
            ins.append(None)
            continue
        data = graph.const_data(v)
        if data is None:
            ins.append(g.add_input(f"in{i}", v.type))
            continue
        nv = g.add_const(data, f"c{i}", dtype=v.type.dtype, quant=v.type.quant)
        pname = nv.producer.attrs["param"]
        arr = g.params[pname]
        if arr.size <= SMALL_CONST or arr.dtype.kind != "f":
            params[pname] = {"data": arr.tolist(), "dtype": str(arr.dtype), "shape": list(arr.shape)}
        else:
            density = float(np.count_nonzero(arr)) / arr.size
            params[pname] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "density": round(density, 3)}
        ins.append(nv)
    attrs = {k: v for k, v in node.attrs.items() if k not in ("primitive", "device", "split")}
    out = g.add_node(node.op, ins, attrs, name=node.name)
    g.set_outputs(out.outputs)
    return {"ir": str(g), "node": node.name, "params": params}


def numpy_work(graph: Graph, device: str = "numpy") -> list[Work]:
    """The pairs select-primitives prices `graph` by (give it the optimised graph)."""
    from ..backends.target import DEVICES
    from ..passes.select.build import build_problem
    from ..passes.select.choices import is_activation
    from ..passes.select.costs import convert_signature, layer_signature
    from ..passes.select.pricing import Pricer

    g = graph.copy()
    g.toposort()
    rec = _Recorder()
    build_problem(g, Pricer(DEVICES[device], rec, measure=False))
    nodes = {layer_signature(n, g): n for n in g.nodes if n.op != "const"}
    types = {convert_signature(v.type): v.type for v in g.values() if is_activation(v.type)}
    out = []
    for sig_text, label in rec.calls:
        sig, choice = Signature.coerce(sig_text), Choice.coerce(label, device)
        if choice.primitive == CONVERT:
            t = types.get(sig_text)
            if t is None:
                log.warning("no activation for conversion signature %r; skipped", sig_text)
                continue
            payload: dict[str, Any] = {"convert": {"shape": list(t.shape), "dtype": t.dtype}}
        else:
            node = nodes.get(sig_text)
            if node is None:
                log.warning("no node for layer signature %r; skipped", sig_text)
                continue
            payload = _scratch_payload(node, g)
        out.append(Work("numpy", sig, choice, payload))
    return out


def _tvm_layers(graph: Graph) -> Iterator[tuple[Node, Signature]]:
    """The float conv / fully_connected nodes a TVM kernel can run, with their signatures."""
    from ..backends.numpy.primitives.dispatch import conv_spec, fc_spec

    for node in graph.nodes:
        if node.op not in ("conv", "fully_connected"):
            continue
        if dtypes.to_numpy(node.inputs[0].type.dtype).kind != "f":
            continue  # quantized layers are not TVM kernels yet
        w = graph.const_data(node.inputs[1])
        spec = conv_spec(node, w) if node.op == "conv" else fc_spec(node, w)
        yield node, Signature.from_spec(spec)


def tvm_work(graph: Graph, device: str, trials: int) -> list[Work]:
    """conv / fully_connected layers with the first `trials` TVM kernel configs each."""
    from .tvm_kind import config_space

    out = []
    for node, sig in _tvm_layers(graph):
        prim, layout = ("tvm_conv2d", "NCHW") if node.op == "conv" else ("tvm_dense", "NC")
        for cfg in config_space(sig)[:max(1, trials)]:
            out.append(Work("tvm", sig, Choice.make(prim, layout, device, config=cfg)))
    return out


def heaviest_layers(graphs: Iterable[Graph], k: int) -> list[tuple[Signature, float, list[str]]]:
    """The `k` distinct conv / dense signatures with the most FLOPs each (dense count: TVM kernels do
    not skip zeros), heaviest first, ties by key: (signature, FLOPs, the nodes that have it)."""
    found: dict[str, tuple[Signature, float, list[str]]] = {}
    for graph in graphs:
        for node, sig in _tvm_layers(graph):
            entry = found.setdefault(sig.key, (sig, 2.0 * sig.to_spec().macs, []))
            entry[2].append(node.name)
    return sorted(found.values(), key=lambda e: (-e[1], e[0].key))[:max(0, k)]


def ms_devices(target: str, tvm_target: str = "") -> list[str]:
    """The devices of `target` meta_schedule can tune here; LpdcTargetError if there are none or
    one needs a cross compiler (meta_schedule's local builder and runner: this host only)."""
    from ..backends.target import Target
    from .ms_kind import ms_target

    devices = [d.name for d in Target(target).devices if d.backend == "tvm"]
    if not devices:
        raise LpdcTargetError(f"meta_schedule tunes TVM kernels: target {target!r} has no TVM device (use x86)")
    for dev in devices:
        ms_target(dev, tvm_target)  # raises for a device that needs a cross compiler
    return devices


def ms_model_work(graphs: Sequence[Graph], target: str, layers: int = 3, trials: int = 8, seed: int = 0,
                  tvm_target: str = "") -> list[Work]:
    """A meta_schedule search of `trials` candidates for each of the `layers` heaviest layers, per
    TVM device of `target`. Raises LpdcTargetError where meta_schedule cannot tune: a target
    without TVM devices, or one whose kernels need a cross compiler (it tunes on this host only)."""
    from .ms_kind import KIND, ms_choice

    if trials < 1 or layers < 1:
        raise LpdcError(f"meta_schedule needs trials >= 1 and layers >= 1, got {trials} and {layers}")
    devices = ms_devices(target, tvm_target)
    heavy = heaviest_layers(graphs, layers)
    if not heavy:
        raise LpdcError("nothing for meta_schedule to tune: the model has no float conv or dense layer")
    return [Work(KIND, sig, ms_choice(sig, dev, trials, seed), {"layers": names, "flops": flops})
            for dev in devices for sig, flops, names in heavy]


def model_work(graphs: Iterable[Graph], target: str = "numpy", trials: int = 4) -> list[Work]:
    """Every measurement the graphs need on `target`, each (signature, choice) once."""
    from ..backends.target import Target

    tgt = Target(target)
    seen: dict[tuple[str, str], Work] = {}
    for graph in graphs:
        for dev in tgt.devices:
            if dev.backend == "numpy":
                items = numpy_work(graph, dev.name)
            elif dev.backend == "tvm":
                items = tvm_work(graph, dev.name, trials)
            else:
                raise LpdcUnsupportedError(f"cannot tune device {dev.name!r}: no {dev.backend} measurement kind yet")
            for w in items:
                seen.setdefault(w.key, w)
    if not seen:
        raise LpdcError("nothing to tune: the model has no layer with more than one choice")
    return list(seen.values())
