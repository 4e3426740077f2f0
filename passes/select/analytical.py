"""The analytical cost model: seconds from arithmetic, memory traffic and call overheads.

    t = flops / (peak * efficiency) + bytes / bandwidth + calls * overhead

Primitives supply their own flops, traffic, calls and efficiency (a Winograd layer executes fewer
multiplications than its definition, kn2row more); the device supplies peak GFLOP/s and memory
bandwidth (backends/target.py). Other ops are charged their registry FLOP and byte counts at a
low, memory-bound efficiency. It only needs to rank choices sensibly where nothing was measured.
"""

from __future__ import annotations

from ...backends.numpy.primitives import get_primitive
from ...backends.numpy.primitives.dispatch import conv_spec, fc_spec
from ...backends.target import Device
from ...ir import Graph, Node, TensorType
from .choices import DEFAULT_LAYOUT, Choice

# Fixed cost of one library call / kernel launch, by backend.
CALL_OVERHEAD_S = {"numpy": 15e-6, "tvm": 3e-6, "opencl": 30e-6}
# Element-wise and data-movement ops reach only a small fraction of peak arithmetic.
GLUE_EFFICIENCY = 0.05


def _seconds(device: Device, flops: float, nbytes: float, calls: int, efficiency: float) -> float:
    peak = device.peak_gflops * 1e9 * max(efficiency, 1e-3)
    return flops / peak + nbytes / (device.bandwidth_gbs * 1e9) + calls * CALL_OVERHEAD_S.get(device.backend, 1e-5)


def estimate_node(node: Node, graph: Graph, choice: Choice, device: Device) -> float:
    """Modelled seconds of `node` run as `choice` on `device`."""
    if choice.primitive and node.op in ("conv", "fully_connected"):
        prim = get_primitive(choice.primitive, node.op)
        w = graph.const_data(node.inputs[1])
        spec = conv_spec(node, w) if node.op == "conv" else fc_spec(node, w)
        epilogue = spec.out_bytes if node.op == "conv" else 0  # the bias/activation pass over the output
        return _seconds(device, prim.flops(spec), prim.traffic(spec) + 2 * epilogue, prim.calls(spec),
                        prim.efficiency)
    ins = [None if v is None else v.type for v in node.inputs]
    outs = [v.type for v in node.outputs]
    schema = node.schema
    flops = schema.flops(ins, outs, node.attrs).total
    nbytes = float(schema.bytes(ins, outs))
    if device.backend == "numpy" and choice.layout not in (DEFAULT_LAYOUT, "-") and node.op != "concat" \
            and not schema.has("elementwise"):
        # the NumPy reference kernels of pooling and normalisation work in NCHW: one more copy
        nbytes += 2 * sum(t.nbytes for t in outs)
    return _seconds(device, flops, nbytes, 1, GLUE_EFFICIENCY)


def estimate_convert(t: TensorType, src: str, dst: str, device: Device) -> float:
    """Modelled seconds of moving activation `t` from layout `src` to `dst` (0 when equal).

    A transpose reads with a large stride on one side, so it runs at about half the bandwidth."""
    if src == dst:
        return 0.0
    return _seconds(device, 0.0, 4.0 * t.nbytes, 1, 1.0)
