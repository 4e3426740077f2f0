"""Integer (u8 x i8 -> i32) kernels of the TVM x86 backend against the NumPy reference, bit for bit.

Graphs are quantized with lpdc.quantize (int8 per-channel weights, per-tensor activations); the
TVM build must run every integer layer on a VNNI / AVX-512BW kernel (fused with its requantize or
dequantize) and every quant op on an elementwise kernel, and produce exactly the reference's
integers: the same zero-point handling, rounding (half to even) and saturation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm")

import lpdc  # noqa: E402
from lpdc.backends.numpy import compile_numpy  # noqa: E402
from lpdc.backends.tvm import compile_tvm  # noqa: E402
from lpdc.backends.tvm.int8_conv import int8_intrinsic  # noqa: E402
from lpdc.tools.builder import NetBuilder  # noqa: E402
from lpdc.tools.digits_cnn import digits_graph, digits_split  # noqa: E402

pytestmark = pytest.mark.skipif(int8_intrinsic() is None, reason="this CPU has no AVX-512 integer dot products")
FIXTURE = Path(__file__).resolve().parent / "fixtures" / "digits_cnn_seed0.npz"


def _quantized(g, scheme: str = "int8", seed: int = 0, n: int = 3):
    rng = np.random.default_rng(seed)
    calib = [{v.name: rng.standard_normal(v.type.shape).astype(np.float32) for v in g.inputs} for _ in range(n)]
    return lpdc.quantize(g, calibration=calib, scheme=scheme)


def _steps(exe) -> dict[str, str]:
    """"name:op" of each step's node -> what ran it: "numpy", or the TVM op chain ("conv+requantize")."""
    return {f"{s.node.name}:{s.node.op}": ("+".join([s.node.op] + [f.op for f in s.fused]) if s.func else "numpy")
            for s in exe.plan.steps}


def _equal_runs(q, feeds) -> object:
    exe = compile_tvm(q, "x86")
    want = compile_numpy(q).run(feeds)
    got = exe.run(feeds)
    for k, ref in want.items():
        np.testing.assert_array_equal(got[k], ref, err_msg=k)
    return exe


def _conv_net(c: int, k: int, size: int, kernel: int, stride: int, pad, relu: bool, second: bool = True,
              group: int = 1):
    b = NetBuilder("qnet", (1, c, size, size), seed=c * 31 + k)
    y = b.conv(b.x, k, kernel, stride=stride, pad=pad, group=group)
    if relu:
        y = b.act(y)
    if second:  # a second integer layer reads the first one's u8 output directly
        y = b.act(b.conv(y, 24, 3, pad=1))
    return b.finish(y)


@pytest.mark.parametrize("c,k,size,kernel,stride,pad,relu,group", [
    (16, 32, 12, 3, 1, 1, True, 1),       # the common 3x3
    (3, 16, 19, 7, 2, 3, True, 1),        # the stem: 3 channels padded to 4, odd width, 7x7 stride 2
    (20, 40, 9, 1, 1, 0, False, 1),       # 1x1, K not a multiple of 16, no relu (zero point != 0 out)
    (8, 16, 11, 3, 2, [0, 1, 2, 1], True, 1),  # asymmetric padding, stride 2
    (24, 24, 13, 3, 1, 1, True, 24),      # depthwise
    (32, 32, 9, 3, 2, [1, 0, 1, 2], False, 32),  # depthwise, stride 2, asymmetric padding
])
def test_integer_convs_equal_the_reference_bit_for_bit(c, k, size, kernel, stride, pad, relu, group):
    q = _quantized(_conv_net(c, k, size, kernel, stride, pad, relu, group=group))
    rng = np.random.default_rng(5)
    exe = _equal_runs(q, {"data": rng.standard_normal((1, c, size, size)).astype(np.float32) * 1.5})
    kinds = _steps(exe)
    assert kinds["conv1:conv"] == "conv+requantize"
    assert kinds["conv2:conv"] in ("conv+requantize", "conv+dequantize")
    assert "numpy" not in kinds.values(), kinds


def test_the_digits_cnn_in_int8_equals_the_reference_and_keeps_its_accuracy():
    with np.load(FIXTURE, allow_pickle=False) as f:
        graph = digits_graph({k: f[k] for k in f.files})
    split = digits_split(0)
    q = lpdc.quantize(graph, calibration=[{"x": split.x_train[i:i + 150]} for i in range(0, 450, 150)], scheme="int8")
    feeds = {"x": split.x_test[:150]}
    exe = _equal_runs(q, feeds)
    kinds = _steps(exe)
    integer = [(n.name, n.op) for n in q.nodes if n.op in ("conv", "fully_connected") and n.output.type.dtype == "i32"]
    assert len(integer) == 3 and all(kinds[f"{name}:{op}"] != "numpy" for name, op in integer), kinds
    acc = (exe.run(feeds)["logits"].argmax(1) == split.y_test[:150]).mean()
    assert acc > 0.9


def test_an_accumulator_with_two_readers_is_written_as_int32():
    """No fusion when the int32 accumulator is also a graph output: the kernel writes it raw."""
    q = _quantized(_conv_net(8, 16, 8, 3, 1, 1, True, second=False))
    acc = next(n for n in q.nodes if n.op == "conv").output
    q.set_outputs(list(q.outputs) + [acc])
    exe = _equal_runs(q, {"data": np.random.default_rng(2).standard_normal((1, 8, 8, 8)).astype(np.float32)})
    assert _steps(exe)["conv1:conv"] == "conv"


def test_quant_ops_round_half_to_even_and_saturate_like_the_reference():
    g = lpdc.Graph("q")
    x = g.add_input("x", lpdc.TensorType((1, 4, 3, 5), "f32"))
    y = g.op("quantize", x, dtype="u8", scale=[0.5], zero_point=[10])
    z = g.op("dequantize", y)
    s = g.op("quantize", x, dtype="i8", scale=[0.25], zero_point=[-3])
    r = g.op("requantize", s, dtype="u8", scale=[0.125], zero_point=[100])
    g.set_outputs([y, z, r, g.op("dequantize", r)])
    g.verify()
    # ties (k + 0.5 steps), values beyond both ends of the range, and ordinary values
    vals = np.concatenate([np.arange(-6, 6) * 0.5 + 0.25, [-1e3, 1e3, 200.0, -200.0, 0.0, 3.1, -2.9, 7.7]])
    feeds = {"x": np.resize(vals, (1, 4, 3, 5)).astype(np.float32)}
    exe = _equal_runs(g, feeds)
    assert set(_steps(exe).values()) <= {"quantize", "dequantize", "requantize"}


def test_int8_resnet_block_with_float_residual_equals_the_reference():
    """A conv with a fused residual runs on integers too: act(dequantize(acc) + r) in float after."""
    b = NetBuilder("res", (1, 16, 10, 10), seed=3)
    y = b.act(b.conv(b.x, 16, 3, pad=1))
    y = b.conv(y, 16, 3, pad=1)
    y = b.act(b.g.op("add", y, b.x))
    g = b.finish(b.act(b.conv(y, 32, 1)))
    from lpdc.passes.manager import PassManager, pipeline

    PassManager(pipeline(2)).run(g)
    q = _quantized(g)
    assert any(len(n.inputs) > 3 and n.inputs[3] is not None for n in g.nodes if n.op == "conv")  # fused residual
    exe = _equal_runs(q, {"data": np.random.default_rng(9).standard_normal((1, 16, 10, 10)).astype(np.float32)})
    kinds = _steps(exe)
    convs = [k for k in kinds if k.endswith(":conv")]
    assert len(convs) == 3 and all(kinds[k].startswith("conv+") for k in convs), kinds  # all integer, fused


def test_relu6_layers_run_on_integers_and_equal_a_float_simulation():
    """relu6 = relu on the accumulator + the output format's saturation (its top code is <= 6)."""
    from lpdc.backends.numpy.im2col import conv2d_im2col
    from lpdc.passes.manager import PassManager, pipeline

    b = NetBuilder("r6", (1, 8, 9, 9), seed=4)
    y = b.act(b.conv(b.x, 16, 3, pad=1), "clip", min=0.0, max=6.0)
    g = b.finish(b.act(b.conv(y, 16, 1)))
    PassManager(pipeline(2)).run(g)
    assert next(n for n in g.nodes if n.op == "conv").attrs["activation"] == "relu6"
    q = _quantized(g, n=4)
    conv = next(n for n in q.nodes if n.op == "conv")
    assert conv.output.type.dtype == "i32" and conv.attrs["activation"] == "relu"
    rq = conv.output.users[0]
    feeds = {"data": np.random.default_rng(3).standard_normal((1, 8, 9, 9)).astype(np.float32) * 3}
    seen: dict[str, np.ndarray] = {}
    compile_numpy(q).run(feeds, observer=lambda node, outs: seen.update(
        {v.name: o for v, o in zip(node.outputs, outs, strict=True)}))
    tx, tw = conv.inputs[0].type, conv.inputs[1].type
    x = (seen[conv.inputs[0].name].astype(np.float64) - tx.quant.zero_point[0]) * tx.quant.scale[0]
    w = q.const_data(conv.inputs[1]).astype(np.float64) * np.asarray(tw.quant.scale).reshape(-1, 1, 1, 1)
    bias = q.const_data(conv.inputs[2]).astype(np.float64) * np.asarray(conv.output.type.quant.scale)
    real = np.clip(conv2d_im2col(x, w, (1, 1), (1, 1, 1, 1), (1, 1), 1) + bias[:, None, None], 0, 6)
    t = rq.output.type
    want = np.clip(np.rint(real / t.quant.scale[0]) + t.quant.zero_point[0], 0, 255)
    np.testing.assert_array_equal(seen[rq.output.name], want)
    exe = _equal_runs(q, feeds)
    assert _steps(exe)["conv1:conv"] == "conv+requantize"
