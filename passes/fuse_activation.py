"""fuse-activation: move an activation into the epilogue of the conv / fully_connected / add before it.

Before:  %c = conv(%x, %w, %b) : f32[1,16,8,8]
         %y = relu(%c) : f32[1,16,8,8]
After:   %y = conv(%x, %w, %b) {activation="relu"} : f32[1,16,8,8]     (loc("c"))

Activations and the epilogue they become (see EPILOGUE_ATTRS in ir/ops/nn.py):
    relu                          activation=relu
    clip(0, 6) / clip(0, inf)     relu6 / relu
    clip(lo, hi)                  clip, act_alpha=lo, act_beta=hi
    leaky_relu(alpha), elu(alpha) leaky_relu / elu, act_alpha=alpha
    hard_sigmoid(alpha, beta)     hard_sigmoid, act_alpha=alpha, act_beta=beta
    prelu(x, slope)               prelu, slope as the host's slope input (conv/fc input 5, add input 3)
    sigmoid, tanh, hard_swish     the same name
Formula: y = act(host(x)) = host{activation=act}(x); the epilogue applies the same reference
function (`apply_activation`) to the same pre-activation values.
Preconditions: the host's output is read only by the activation and is not a graph output (another
reader needs the pre-activation values); the host has no activation yet; float unquantized types;
prelu only where the host sees the slope in the layout it was written for (an NCHW conv, a
fully_connected, an add) and never into conv_transpose, whose epilogue has no slope input.
"""

from __future__ import annotations

import logging
import math

from ..ir import Graph, Node, Value
from .manager import register_pass
from .pattern import is_float, match_chain
from .rewrite import forward, remove_dead, run_rules, set_inputs

log = logging.getLogger(__name__)
HOSTS = ("conv", "conv_transpose", "fully_connected", "add")
ACTIVATIONS = ("relu", "clip", "leaky_relu", "elu", "hard_sigmoid", "prelu", "sigmoid", "tanh", "hard_swish")
Epilogue = tuple[str, float, float, Value | None]  # activation, act_alpha, act_beta, slope


def epilogue_of(act: Node) -> Epilogue | None:
    """The epilogue attributes equivalent to the standalone activation `act`, or None."""
    a = act.attrs
    if act.op in ("relu", "sigmoid", "tanh", "hard_swish"):
        return act.op, 0.0, 0.0, None
    if act.op == "clip":
        lo, hi = a["min"], a["max"]
        if lo == 0 and hi == 6:
            return "relu6", 0.0, 0.0, None
        if lo == 0 and math.isinf(hi) and hi > 0:
            return "relu", 0.0, 0.0, None
        return "clip", lo, hi, None
    if act.op in ("leaky_relu", "elu"):
        return act.op, a["alpha"], 0.0, None
    if act.op == "hard_sigmoid":
        return "hard_sigmoid", a["alpha"], a["beta"], None
    if act.op == "prelu":
        return "prelu", 0.0, 0.0, act.inputs[1]
    return None


def slope_slot(host: Node) -> int | None:
    """Where `host` takes a prelu slope, if it can apply it in the layout the slope was written for."""
    if host.op == "add":
        return 2
    if host.op == "fully_connected":
        return 4
    if host.op == "conv" and host.output.type.effective_layout == "NCHW":
        return 4
    return None


def fuse_into_host(g: Graph, host: Node) -> bool:
    """The rule: fuse the activation that alone reads `host`'s output into `host`'s epilogue."""
    chain = match_chain(g, host, HOSTS, ACTIVATIONS)
    ep = epilogue_of(chain[1]) if chain else None
    if chain is None or ep is None or host.attrs["activation"] != "none" or not is_float(host.output.type):
        return False
    act = chain[1]
    if act.output.type != host.output.type:
        return False
    kind, alpha, beta, slope = ep
    updates: dict[int, Value | None] = {}
    if slope is not None:
        slot = slope_slot(host)
        if slot is None:
            return False
        updates[slot] = slope
    host = set_inputs(g, host, updates, activation=kind, act_alpha=alpha, act_beta=beta)
    return forward(g, act, host.output)


@register_pass("fuse-activation")
def fuse_activation(graph: Graph) -> Graph:
    """Fuse every fusable activation into its producer's epilogue."""
    n = run_rules(graph, [fuse_into_host])
    if n:
        graph.toposort()  # a prelu slope may be defined after its new host
    remove_dead(graph)
    log.debug("fuse-activation: %d fusions", n)
    return graph
