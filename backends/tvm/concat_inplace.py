"""Concat elimination: the kernels feeding a channel concat write straight into its buffer.

NHWC activations put a concat's inputs side by side within each pixel, so input i is the channel
window [c0, c0 + K_i) of the output: a strided view (row stride C_total). Its producer's kernel
is built with that output stride (`strided_output`), the runner hands it the view
(program.py), and the concat runs no kernel. SqueezeNet's 8 concats cost 0.26 ms of ~2 ms as
copies. Only where every window starts and every row starts on 64 bytes (the generated code
assumes aligned buffers), each input is a TVM kernel's output read by nothing else, and the plan
runs on the static program (no NumPy fallbacks), which is the one runner that knows the views.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from ...ir import Value
from .build import Plan, Step, kernel_name
from .lower import Lowered, is_act4

_ALIGN_FLOATS = 16  # 64 bytes of float32


def placements(plan: Plan, graph_outputs: set[Value]) -> dict[Value, tuple[Value, int]]:
    """producer output -> (concat output, channel offset) for every concat that can be elided."""
    made_by = {s.output: s for s in plan.steps if s.func is not None}
    placed: dict[Value, tuple[Value, int]] = {}
    for s in plan.steps:
        node = s.node
        if node.op != "concat" or not is_act4(node.output) or node.attrs.get("axis", 1) % 4 != 1:
            continue
        ins = list(node.inputs)
        if len(set(ins)) != len(ins) or node.output.type.dtype != "f32":
            continue
        offsets, c0 = [], 0
        for v in ins:
            offsets.append(c0)
            c0 += int(v.type.shape[1])
        ok = c0 % _ALIGN_FLOATS == 0 and all(o % _ALIGN_FLOATS == 0 for o in offsets)
        for v in ins:
            p = made_by.get(v)
            ok = ok and p is not None and is_act4(v) and v not in graph_outputs and v not in placed
            ok = ok and v.users == [node] and p.node.op != "concat"
        if ok:
            for v, off in zip(ins, offsets, strict=True):
                placed[v] = (node.output, off)
    return placed


def place_concats(plan: Plan, graph_outputs: set[Value]) -> Plan:
    """The plan with elided concats: their steps dropped, their producers' kernels strided."""
    if plan.fallbacks or any(s.func is None for s in plan.steps):
        return plan
    placed = placements(plan, graph_outputs)
    if not placed:
        return plan
    concats = {c for c, _ in placed.values()}
    steps: list[Step] = []
    kernels: dict[str, Lowered] = {}
    by_key: dict[tuple, str] = {}
    for s in plan.steps:
        if s.node.output in concats:
            continue
        low = plan.kernels[s.func]
        if s.output in placed:
            total = int(placed[s.output][0].type.shape[1])
            low = dataclasses.replace(low, key=(*low.key, ("out_channels", total)),
                                      info={**low.info, "out_channels": total})
        name = by_key.get(low.key)
        if name is None:
            name = by_key[low.key] = kernel_name(len(kernels), s.node)
            kernels[name] = low
        steps.append(dataclasses.replace(s, func=name))
    return Plan(steps, kernels, plan.sparse_choices, placed)


def strided_output(f: Any, total: int) -> Any:
    """PrimFunc `f` whose last parameter (an NHWC output [N, H, W, K]) is a window of a
    [N, H, W, total] buffer: same shape, row stride `total`. TE builds compact buffers only, so
    the signature is rewritten in TVMScript and parsed back."""
    import tvm

    src = f.script()
    sig = re.search(r"def \w+\((.*?)\):", src, re.S)
    assert sig is not None, "TVMScript of a PrimFunc without its signature"
    params = list(re.finditer(r'(\w+): T\.Buffer\(\((\d+), (\d+), (\d+), (\d+)\), "float32"\)', sig.group(1)))
    assert params, "no 4-D float32 output parameter to make strided"
    last = params[-1]
    n, h, w, k = (int(last.group(i)) for i in range(2, 6))
    strides = f"strides=({h * w * total}, {w * total}, {total}, 1)"
    new_decl = f'{last.group(1)}: T.Buffer(({n}, {h}, {w}, {k}), "float32", {strides})'
    start = sig.start(1) + last.start()
    end = sig.start(1) + last.end()
    out = tvm.script.from_source(src[:start] + new_decl + src[end:])
    return out.with_attr("global_symbol", f.attrs["global_symbol"])
