"""The a72/a53 TVM kernels' numerics: built single-threaded, linked into a bare C harness (no TVM
runtime) and run under qemu-user, against the NumPy reference (1e-4 x max|ref|).

Needs Debian's gcc-aarch64-linux-gnu and qemu-user; skipped with the reason where either is missing.
Outputs are compared before a final softmax (random weights can saturate it).
"""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("tvm")

from lpdc.backends.numpy import compile_numpy  # noqa: E402
from lpdc.backends.tvm.qemu import cross_build, run_under_qemu  # noqa: E402
from lpdc.errors import LpdcTargetError, LpdcUnsupportedError  # noqa: E402
from lpdc.ir import Graph, TensorType  # noqa: E402
from lpdc.passes.manager import PassManager, pipeline  # noqa: E402
from lpdc.tools import zoo  # noqa: E402
from lpdc.tools.builder import NetBuilder  # noqa: E402

_MISSING = [t for t in ("aarch64-linux-gnu-gcc", "qemu-aarch64") if shutil.which(t) is None]
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"needs {', '.join(_MISSING)} (gcc-aarch64-linux-gnu, "
                                                        "qemu-user)")


def optimised(g: Graph, hw: int | None = None) -> Graph:
    """`g` at hw x hw input (every node re-inferred), without a final softmax, after pipeline(2)."""
    g = g.copy()
    if hw is not None:
        x = g.inputs[0]
        x.type = TensorType((*x.type.shape[:2], hw, hw), x.type.dtype)
        for node in g.nodes:
            if node.op != "const":
                g.reinfer(node)
    outs = [v.producer.inputs[0] if v.producer is not None and v.producer.op == "softmax" else v for v in g.outputs]
    g.set_outputs(outs)
    for node in [n for n in g.nodes if n.op == "softmax" and not n.output.users]:
        g.erase(node)
    g.verify()
    return PassManager(pipeline(2)).run(g)


def check(g: Graph, device: str = "a72", seed: int = 0) -> float:
    """Run `g` under qemu and compare every output; returns the worst error relative to max|ref|."""
    feeds = {v.name: np.random.default_rng(seed).standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    ref = compile_numpy(g).run(feeds)
    got = run_under_qemu(g, feeds, device)
    worst = 0.0
    for k, r in ref.items():
        assert got[k].shape == r.shape, k
        scale = max(float(np.abs(r).max()), 1e-6)
        err = float(np.abs(got[k] - r).max()) / scale
        assert err <= 1e-4, f"{k}: max error {err:.2e} x max|ref|"
        worst = max(worst, err)
    return worst


def _conv_bias_relu() -> Graph:
    b = NetBuilder("conv3x3", (1, 8, 13, 11), seed=1)
    return b.finish(b.act(b.conv(b.x, 24, 3, pad=1)))


def _strided_asym() -> Graph:
    b = NetBuilder("stride2", (1, 6, 17, 19), seed=2)
    return b.finish(b.act(b.conv(b.x, 20, 3, stride=2, pad=[1, 0, 2, 1]), "clip", min=0.0, max=6.0))


def _depthwise() -> Graph:
    b = NetBuilder("dw", (1, 12, 15, 15), seed=3)
    x = b.conv(b.x, 12, 3, pad=1, group=12, name="dw")
    x = b.conv(b.act(x), 12, 3, stride=2, pad=1, group=12, name="dw_s2")
    return b.finish(x)


def _fc_residual() -> Graph:
    b = NetBuilder("fc_res", (1, 8, 3, 3), seed=4)
    h = b.fc(b.x, 20)
    y = b.g.op("add", b.fc(b.act(h), 20), h, name="res")
    return b.finish(b.act(y))


def _pools() -> Graph:
    b = NetBuilder("pools", (1, 16, 14, 14), seed=5)
    g = b.g
    m = g.op("max_pool", b.x, name="max_ceil", kernel=[3, 3], stride=[2, 2], ceil_mode=True)
    a = g.op("avg_pool", b.x, name="avg_excl", kernel=[3, 3], stride=[2, 2], pad=[1, 1, 1, 1], ceil_mode=True,
             count_include_pad=False)
    return b.finish(m, a, g.op("global_avg_pool", a, name="gap"))


def _residual_block() -> Graph:
    b = NetBuilder("resblock", (1, 16, 12, 12), seed=6)
    y = b.act(b.bn(b.conv(b.x, 16, 3, pad=1, bias=False)))
    y = b.bn(b.conv(y, 16, 3, pad=1, bias=False))
    short = b.bn(b.conv(b.x, 16, 1, bias=False))
    return b.finish(b.act(b.g.op("add", y, short, name="sum")))


SMALL = {"conv3x3_bias_relu": _conv_bias_relu, "stride2_asym_pad": _strided_asym, "depthwise": _depthwise,
         "fc_residual": _fc_residual, "pools": _pools, "residual_block": _residual_block}


@pytest.mark.parametrize("name", list(SMALL))
def test_small_graph_matches_reference(name: str) -> None:
    check(optimised(SMALL[name]()))


def test_fc_residual_is_fused_into_the_kernel() -> None:
    g = optimised(_fc_residual())
    ops = [n for n in g.nodes if n.op != "const"]
    assert "add" not in {n.op for n in ops}
    last = ops[-1]
    assert last.op == "fully_connected" and last.inputs[3] is not None and last.attrs["activation"] == "relu"


def test_a53_build_matches_reference() -> None:
    check(optimised(_residual_block()), device="a53")


@pytest.mark.parametrize(("name", "hw"), [("mobilenet_v2", 64), ("resnet18", 64), ("tiny_cnn", None), ("lenet", None)])
def test_zoo_model_matches_reference(name: str, hw: int | None) -> None:
    check(optimised(zoo.build(name), hw))


def test_numpy_fallback_is_refused() -> None:
    b = NetBuilder("lrn", (1, 8, 9, 9), seed=7)
    x = b.g.op("lrn", b.conv(b.x, 8, 3, pad=1), name="norm", size=3, alpha=1e-4, beta=0.75, region="within")
    g = optimised(b.finish(x))
    with pytest.raises(LpdcUnsupportedError, match="norm"):
        run_under_qemu(g, {"data": np.zeros((1, 8, 9, 9), np.float32)})


def test_missing_tool_is_an_lpdc_error(monkeypatch) -> None:
    import lpdc.backends.tvm.qemu as q

    monkeypatch.setattr(q.shutil, "which", lambda t: None if t == "qemu-aarch64" else "/usr/bin/" + t)
    with pytest.raises(LpdcTargetError, match="qemu-aarch64"):
        run_under_qemu(optimised(_pools()), {"data": np.zeros((1, 16, 14, 14), np.float32)})


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-objdump") is None, reason="needs aarch64-linux-gnu-objdump")
def test_serial_object_uses_neon_fma_and_no_thread_pool(tmp_path) -> None:
    _, lib = cross_build(optimised(_conv_bias_relu()))
    obj = tmp_path / "k.o"
    lib.mod.write_to_file(str(obj))
    asm = subprocess.run(["aarch64-linux-gnu-objdump", "-d", str(obj)], capture_output=True, text=True,
                         check=True).stdout
    assert any("fmla" in line and ".4s" in line for line in asm.splitlines())
    syms = subprocess.run(["aarch64-linux-gnu-objdump", "-t", str(obj)], capture_output=True, text=True,
                          check=True).stdout
    assert "ParallelLaunch" not in syms


def test_pruned_fc_takes_the_sparse_kernel_and_matches_reference() -> None:
    """A 90%-pruned FC builds the sparse kernel for the A72 too; its integer column array reaches the
    harness with its own dtype (not as floats)."""
    import lpdc

    b = NetBuilder("sparse_fc", (1, 64, 4, 4), seed=11)
    g = lpdc.prune(optimised(b.finish(b.act(b.fc(b.x, 256)))), sparsity=0.9, method="magnitude")
    plan, _ = cross_build(g, "a72")
    assert any(k.schedule == "sparse_fc" for k in plan.kernels.values())
    check(g)
