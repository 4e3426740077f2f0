"""The OpenCL backend (TVM-generated OpenCL C run through pyopencl) against the NumPy reference.

The zoo runs at full resolution: on PoCL every model builds and runs in a few seconds. Besides
each model's output, the logits before a final softmax are compared too (random weights can
saturate the softmax and hide errors). Layer checks build the fused node directly and compile it
without passes, so the node reaching the code generator is exactly the one built here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from lpdc.backends.opencl import runtime

if not runtime.available():
    pytest.skip("no working OpenCL device (install pocl-opencl-icd)", allow_module_level=True)

import lpdc  # noqa: E402
from backend_util import assert_matches, feeds_for, with_logits  # noqa: E402
from lpdc.backends.numpy import compile_numpy  # noqa: E402
from lpdc.backends.opencl import compile_opencl  # noqa: E402
from lpdc.errors import LpdcError, LpdcTargetError  # noqa: E402
from lpdc.ir import Graph, Value  # noqa: E402
from lpdc.passes.manager import PassManager, pipeline  # noqa: E402
from lpdc.tools.builder import NetBuilder  # noqa: E402
from lpdc.tools.zoo import MODELS, build  # noqa: E402

# Largest error seen on PoCL is 1.3e-5 x max|ref| (ssd_mobilenet); 4x headroom for other devices.
ZOO_RTOL = 5e-5
LAYER_RTOL = 1e-5


# ---- the zoo -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(MODELS))
def test_zoo_model_matches_reference(name: str) -> None:
    g = with_logits(build(name))
    PassManager(pipeline(2)).run(g)
    feeds = feeds_for(g)
    ref = compile_numpy(g).run(feeds)
    exe = lpdc.compile(g, target="opencl", opt_level=2)
    assert exe.fallbacks == {}, exe.fallbacks
    assert any(s.kernel is not None for s in exe.plan.steps)  # TVM-generated kernels, not only hand-written
    assert_matches(exe.run(feeds), ref, ZOO_RTOL)


# ---- code generation, layer by layer -----------------------------------------------------------
def check_layer(g: Graph, node: str, seed: int = 1) -> None:
    """`node` becomes one TVM-generated kernel and the graph equals the reference."""
    feeds = feeds_for(g, seed)
    ref = compile_numpy(g).run(feeds)
    exe = compile_opencl(g)
    assert exe.fallbacks == {}, exe.fallbacks
    step = next(s for s in exe.plan.steps if s.node.name == node)
    assert step.kernel is not None and step.handwritten is None, step
    assert step.kernel in exe.plan.source
    assert_matches(exe.run(feeds), ref, LAYER_RTOL)


def _bias(g: Graph, k: int, name: str) -> Value:
    return g.add_const(np.linspace(-0.5, 0.5, k, dtype=np.float32), name)


def test_conv_plain_with_bias_and_relu() -> None:
    b = NetBuilder("conv", (1, 5, 9, 10), seed=2)
    w = b.weight("w", (16, 5, 3, 3), 45)
    y = b.g.op("conv", b.x, w, _bias(b.g, 16, "b"), name="c", pad=[1, 1, 1, 1], activation="relu")
    check_layer(b.finish(y), "c")


def test_conv_dilated_strided_asymmetric_pad() -> None:
    """stride 2, dilation 2, pads (top, left, bottom, right) all different, a 3x2 kernel, batch 2
    and 12 output channels (no multiple of 8: the channel block must divide them)."""
    b = NetBuilder("conv", (2, 6, 13, 11), seed=3)
    w = b.weight("w", (12, 6, 3, 2), 36)
    y = b.g.op("conv", b.x, w, _bias(b.g, 12, "b"), name="c", stride=[2, 2], dilation=[2, 2], pad=[2, 1, 0, 3])
    g = b.finish(y)
    assert g.outputs[0].type.shape == (2, 12, 6, 7)
    check_layer(g, "c")


def test_conv_residual_prelu_epilogue() -> None:
    b = NetBuilder("conv", (1, 8, 7, 7), seed=4)
    side = b.conv(b.x, 16, 1, name="side")
    w = b.weight("w", (16, 8, 3, 3), 72)
    slope = b.g.add_const(np.linspace(0.05, 0.3, 16, dtype=np.float32).reshape(16, 1, 1), "slope")
    y = b.g.op("conv", b.x, w, _bias(b.g, 16, "b"), side, slope, name="c", pad=[1, 1, 1, 1], activation="prelu")
    check_layer(b.finish(y), "c")


def test_depthwise_conv() -> None:
    b = NetBuilder("dw", (1, 12, 11, 9), seed=5)
    w = b.weight("w", (12, 1, 3, 3), 9)
    y = b.g.op("conv", b.x, w, _bias(b.g, 12, "b"), name="dw", group=12, stride=[2, 2], pad=[1, 1, 1, 1],
               activation="clip", act_alpha=0.0, act_beta=6.0)
    check_layer(b.finish(y), "dw")


def test_fully_connected_plain() -> None:
    b = NetBuilder("fc", (3, 40), seed=6)
    w = b.weight("w", (20, 40), 40)
    check_layer(b.finish(b.g.op("fully_connected", b.x, w, name="fc")), "fc")


def test_fully_connected_residual_relu() -> None:
    b = NetBuilder("fc", (2, 3, 4, 5), seed=7)  # a 4-D input: the FC flattens it (NHWC-stored on the device)
    side = b.fc(b.x, 24, name="side")
    w = b.weight("w", (24, 60), 60)
    y = b.g.op("fully_connected", b.x, w, _bias(b.g, 24, "b"), side, name="fc", activation="relu")
    g = b.finish(y)
    ref = compile_numpy(g).run(feeds_for(g, 1))["fc"]
    assert (ref == 0).any() and (ref > 0).any()  # relu is exercised both ways
    check_layer(g, "fc")


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avg_pool_caffe_ceil_mode(count_include_pad: bool) -> None:
    """9x8 input, 3x3 window, stride 2, pad 1, ceil mode: the last window hangs over the padding
    (Caffe clips its divisor to the padded input, or counts only real elements)."""
    b = NetBuilder("pool", (1, 6, 9, 8), seed=8)
    y = b.g.op("avg_pool", b.x, name="p", kernel=[3, 3], stride=[2, 2], pad=[1, 1, 1, 1], ceil_mode=True,
               count_include_pad=count_include_pad)
    g = b.finish(y)
    assert g.outputs[0].type.shape == (1, 6, 5, 5)  # floor mode would give 5 x 4
    check_layer(g, "p")


# ---- errors ------------------------------------------------------------------------------------
def test_build_failure_reports_log_and_numbered_source() -> None:
    src = "__kernel void broken(__global float* a) { a[0] = undefined_name; }"
    with pytest.raises(runtime.OpenCLBuildError) as info:
        runtime.get_runtime().program(src)
    assert isinstance(info.value, LpdcError)
    msg = str(info.value)
    log_part, sep, source_part = msg.partition("--- source ---")
    assert sep, msg
    assert "undefined_name" in log_part and "error" in log_part.lower(), log_part  # the compiler's own words
    assert f"   1| {src}" in source_part.splitlines()


_NO_DEVICE = textwrap.dedent("""
    import numpy as np
    import lpdc
    from lpdc.errors import LpdcTargetError
    from lpdc.tools.zoo import build

    g = build("lenet")
    for target in ("opencl", "mali+a72"):
        try:
            lpdc.compile(g, target=target)
        except LpdcTargetError as e:
            print(f"{target} REFUSED: {e}")
        else:
            raise SystemExit(f"{target} compiled without an OpenCL device")
    x = {"data": np.random.default_rng(0).standard_normal((1, 1, 28, 28)).astype(np.float32)}
    ref = lpdc.compile(g, target="numpy").run(x)["prob"]
    got = lpdc.compile(g, target="x86").run(x)["prob"]
    print("CPU TARGETS OK", float(np.abs(got - ref).max()))
""")


def test_no_working_device_refuses_opencl_but_cpu_targets_work() -> None:
    env = {**os.environ, "LPDC_OPENCL_DEVICE": "no-such-device-xyz"}
    proc = subprocess.run([sys.executable, "-c", _NO_DEVICE], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    for target in ("opencl", "mali+a72"):
        refused = next(line for line in lines if line.startswith(f"{target} REFUSED"))
        assert "no working OpenCL device" in refused and "no-such-device-xyz" in refused, refused
        assert "CPU-only target such as 'x86'" in refused, refused
    ok = next(line for line in lines if line.startswith("CPU TARGETS OK"))
    assert float(ok.split()[-1]) <= 1e-5, ok


def test_unknown_device_in_target() -> None:
    g = build("lenet")
    with pytest.raises(LpdcTargetError, match=r"unknown device 'foo'.*known devices: numpy, x86, a72, a53, mali"):
        lpdc.compile(g, target="mali+foo")


@pytest.mark.parametrize("device", ["mali", "opencl"])
def test_generated_sources_stay_within_opencl_1_2_without_fp64(device: str) -> None:
    """Mali drivers build OpenCL 1.2 and have no fp64: no double anywhere, and the program builds
    with -cl-std=CL1.2 (the runtime's build options)."""
    from lpdc.backends.opencl.build import plan_gpu

    g = PassManager(pipeline(2)).run(build("ssd_mobilenet"))  # TVM kernels and hand-written ones
    plan = plan_gpu(g, device=device)
    sources = [plan.source] + [s.handwritten.source for s in plan.steps if s.handwritten is not None]
    assert len(sources) > 1 and not plan.fallbacks
    for src in sources:
        assert "double" not in src and "fp64" not in src
        runtime.get_runtime().program(src)


def test_pruned_fc_runs_the_sparse_kernel_on_the_device() -> None:
    """A 90%-pruned FC lowers to the sparse kernel, whose column indices are integers on the device."""
    b = NetBuilder("sparse_fc", (1, 64, 4, 4), seed=11)
    g = lpdc.prune(PassManager(pipeline(2)).run(b.finish(b.act(b.fc(b.x, 256)))), sparsity=0.9, method="magnitude")
    exe = compile_opencl(g)
    (step,) = [s for s in exe.plan.steps if s.node.op == "fully_connected"]
    signature = exe.plan.source.split(f"{step.kernel}_kernel(")[1].split(")")[0]
    assert "ushort* restrict cols" in signature  # the column indices stay 16-bit integers
    feeds = feeds_for(g)
    assert_matches(exe.run(feeds), compile_numpy(g).run(feeds), LAYER_RTOL)
