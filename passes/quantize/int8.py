"""Integer inference: requantization multipliers and which layers can run on integer kernels.

An integer layer computes, with x and w stored as integers (zero points subtracted):
    acc[c] = sum(x_q * w_q) + b_q[c]                         int32 (the conv/fc kernels already do this)
    y_q    = zp_y + round(acc[c] * M[c] / 2**shift[c])        requantize, int64 product, no floats
where M[c] * 2**-shift[c] ~= s_x * s_w[c] / s_y with M in [2**30, 2**31): 31 significant bits, so
the integer result equals the float rescale except when acc*ratio lies within ~2**-31 relative
of a rounding tie. For dynamic fixed point the ratio is a power of two and M = 2**30 is exact.
"""

from __future__ import annotations

import math

import numpy as np

from ...errors import LpdcError
from ...ir import Node
from .schemes import QFormat


def quantize_multiplier(ratio: float) -> tuple[int, int]:
    """(M, shift) with ratio ~= M * 2**-shift, M in [2**30, 2**31) (smaller only for tiny ratios)."""
    if not math.isfinite(ratio) or ratio <= 0:
        raise LpdcError(f"requantization ratio {ratio!r} must be finite and positive", where="quantize")
    mant, exp = math.frexp(ratio)  # ratio = mant * 2**exp, mant in [0.5, 1)
    mult, shift = round(mant * 2 ** 31), 31 - exp
    if mult == 2 ** 31:
        mult, shift = mult // 2, shift - 1
    if shift < 0:
        raise LpdcError(f"requantization ratio {ratio:g} is too large for a 31-bit multiplier", where="quantize")
    if shift > 62:  # ratios below 2**-31: drop low multiplier bits (the result rounds to 0 or 1 anyway)
        mult, shift = mult >> (shift - 62), 62
    return int(mult), int(shift)


def multipliers(acc: QFormat, out: QFormat) -> tuple[list[int], list[int]]:
    """Per-channel (or single) multipliers and shifts from accumulator scales to the output scale."""
    pairs = [quantize_multiplier(s / out.scale[0]) for s in acc.scale]
    return [m for m, _ in pairs], [s for _, s in pairs]


def integer_eligible(node: Node, weights: object, act_in: QFormat | None, act_out: QFormat | None,
                     terminal: bool = False) -> str | None:
    """None if `node` can run on integer kernels with these formats, else the reason it cannot.

    A `terminal` layer (no quantized layer downstream) needs no output format: its int32
    accumulator is dequantized directly, which keeps e.g. the logits at full precision. So does a
    layer with a fused residual: its accumulator is dequantized and the residual added in float
    (then the activation), as the reference computes `act(conv + residual)`."""
    terminal = terminal or has_residual(node)
    if act_in is None or (act_out is None and not terminal) or not isinstance(weights, QFormat):
        return "integer layers need quantized input, output and (non-codebook) weights"
    act = node.attrs.get("activation", "none")
    if act == "prelu" or (len(node.inputs) > 4 and any(v is not None for v in node.inputs[4:])):
        return "a prelu slope needs float arithmetic"
    if not has_residual(node) and act == "relu6" and not saturates_at(act_out, 6.0):
        return "relu6 is integer-exact only when the output format saturates at 6"
    if not has_residual(node) and act not in ("none", "relu", "relu6"):  # with a residual: float, after
        return f"activation {act} is not integer-exact (relu is; relu6 where the output saturates at 6)"
    if node.op == "conv" and node.inputs[0].type.effective_layout != "NCHW":
        return "integer conv is lowered for NCHW only"
    for fmt, what in ((act_in, "input"), (act_out, "output")):
        if fmt is not None and (fmt.bits > 8 or fmt.clamped):
            return f"{what} format of {fmt.bits} bits is not an 8-bit storage type"
    if weights.bits > 8:
        return f"{weights.bits}-bit weights could overflow int32 accumulation"
    if act_in.axis is not None or (act_out is not None and act_out.axis is not None):
        return "activations must be quantized per tensor"
    return None


def saturates_at(fmt: QFormat | None, hi: float) -> bool:
    """True when requantizing into `fmt` clamps every value above `hi` exactly as min(y, hi) would:
    the largest code is at most quantize(hi). Then relu6 = relu on the accumulator + saturation,
    bit for bit (quantization is monotone, so it commutes with the clamp)."""
    if fmt is None or len(fmt.scale) != 1:
        return False
    return int(np.rint(hi / fmt.scale[0])) + int(fmt.zero_point[0]) >= fmt.qmax


def integer_activation(node: Node) -> str:
    """The activation an integer layer applies to its int32 accumulator (relu6's upper clamp is
    the output format's saturation, see saturates_at)."""
    act = node.attrs.get("activation", "none")
    return "relu" if act == "relu6" else act


def has_residual(node: Node) -> bool:
    """The layer adds a fused residual input (fuse-residual's `act(conv + bias + r)`)."""
    return len(node.inputs) > 3 and node.inputs[3] is not None


def quantized_bias(b: np.ndarray, acc: QFormat) -> QFormat:
    """The bias format of an integer layer: int32 at the accumulator's scale (per channel, axis 0)."""
    return QFormat("i32", 32, -(2 ** 31), 2 ** 31 - 1, acc.scale, acc.zero_point, 0 if len(acc.scale) > 1 else None)
