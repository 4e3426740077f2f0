"""The model analyzer: exact counts on small graphs, published figures on zoo models, JSON and plots.

Published figures (single 224x224 image, AlexNet 227x227; MACs of conv and fully-connected layers):
AlexNet 61.0M parameters / 0.72 GMACs, VGG-16 138M / 15.5G, ResNet-50 25.6M / 4.1G, MobileNet v1
4.2M / 0.57G. Counting needs only the graph; nothing is executed.
"""

from __future__ import annotations

import json
import math

import lpdc
import numpy as np
import pytest
from lpdc.errors import LpdcError
from lpdc.ir import Graph, TensorType, get_op
from lpdc.tools.analyze import analyze, format_table, to_json
from lpdc.tools.plots import plot_analysis


def _conv_graph(activation: str = "none") -> Graph:
    g = Graph("small")
    x = g.add_input("x", TensorType((1, 3, 8, 8)))
    w = g.add_const(np.ones((8, 3, 3, 3), np.float32), "w")
    b = g.add_const(np.zeros(8, np.float32), "b")
    y = g.op("conv", x, w, b, name="conv", pad=[1, 1, 1, 1], activation=activation)
    p = g.op("max_pool", y, name="pool", kernel=[2, 2], stride=[2, 2])
    f = g.op("flatten", p, name="flat")
    w2 = g.add_const(np.ones((10, 128), np.float32), "fc.w")
    g.set_outputs([g.op("fully_connected", f, w2, name="fc")])
    return g


def test_small_graph_counts_by_hand():
    a = analyze(_conv_graph(), bits=32)
    conv, pool, flat, fc = a.layers
    assert (conv.params, conv.macs, conv.mul) == (8 * 27 + 8, 8 * 64 * 27, 8 * 64 * 27)
    assert conv.add == 8 * 64 * 27  # 26 adds per dot product of 27, plus the bias
    assert (conv.weight_bytes, conv.activation_bytes) == (224 * 4, 8 * 64 * 4)
    assert (pool.cmp, pool.macs, pool.params) == (8 * 16 * 3, 0, 0)
    assert flat.ops == 0 and flat.activation_bytes == 128 * 4
    assert (fc.params, fc.macs, fc.add) == (1280, 1280, 10 * 127)
    t = a.total
    assert t.params == 224 + 1280 and t.macs == 13824 + 1280
    assert t.activation_bytes == 4 * (192 + 512 + 128 + 128 + 10)  # input + every output once
    # conv output (512 f32) and its input (192 f32) are live together; nothing else ever is larger
    assert t.peak_live_bytes == 4 * (512 + 192) and t.arena_bytes >= t.peak_live_bytes


@pytest.mark.parametrize("bits", [16, 8, 1])
def test_bit_width_scales_weights_and_activations(bits):
    full, low = analyze(_conv_graph(), 32), analyze(_conv_graph(), bits)
    assert low.total.weight_bytes == math.ceil(224 * bits / 8) + math.ceil(1280 * bits / 8)
    assert low.total.activation_bytes == sum(math.ceil(n * bits / 8) for n in (192, 512, 128, 128, 10))
    assert low.total.macs == full.total.macs and low.total.params == full.total.params


def test_fused_epilogue_costs_what_the_activation_costs():
    base = analyze(_conv_graph("none")).layers[0]
    relu6 = analyze(_conv_graph("relu6")).layers[0]
    sig = analyze(_conv_graph("sigmoid")).layers[0]
    n = 8 * 64
    assert relu6.cmp - base.cmp == 2 * n and relu6.macs == base.macs
    assert (sig.other - base.other, sig.div - base.div, sig.add - base.add) == (n, n, n)


def test_flop_formulas_fixed_in_the_registry():
    t = TensorType
    x, o = t((1, 16, 4, 4)), t((1, 16, 4, 4))
    lrn = get_op("lrn").flops([x], [o], {"size": 5, "region": "across"})
    assert (lrn.mul, lrn.add, lrn.div, lrn.other) == (256 * 6, 256 * 5, 256, 256)
    mm = get_op("matmul").flops([t((4, 8)), t((8, 3))], [t((4, 3))], {})
    assert (mm.mul, mm.add, mm.mac) == (96, 12 * 7, 96)
    gemm = get_op("gemm").flops([t((4, 8)), t((8, 3)), t((3,))], [t((4, 3))],
                                {"trans_a": False, "trans_b": False, "alpha": 2.0, "beta": 1.0})
    assert (gemm.mul, gemm.add, gemm.mac) == (96 + 12, 12 * 8, 96)
    red = get_op("reduce_max").flops([x], [t((1, 16, 1, 1))], {})
    assert (red.cmp, red.add, red.div) == (256 - 16, 0, 0)
    norm = get_op("normalize").flops([x, t((1,))], [o], {"across_spatial": False})
    assert (norm.mul, norm.add, norm.div, norm.other) == (512, 256, 256, 16)


def test_shared_weights_count_once_in_the_total():
    g = Graph("tied")
    x = g.add_input("x", TensorType((1, 4)))
    w = g.add_const(np.ones((4, 4), np.float32), "w")
    y = g.op("fully_connected", g.op("fully_connected", x, w, name="a"), w, name="b")
    g.set_outputs([y])
    a = analyze(g)
    assert [x.params for x in a.layers] == [16, 16] and a.total.params == 16


def test_json_table_and_errors():
    a = analyze(_conv_graph(), bits=8)
    d = json.loads(json.dumps(to_json(a)))
    assert d["bits"] == 8 and d["total"]["params"] == 1504 and d["total"]["macs"] == 15104
    assert [x["name"] for x in d["layers"]] == ["conv", "pool", "flat", "fc"]
    text = format_table(a)
    assert "TOTAL" in text and "conv" in text and "arena with reuse" in text
    with pytest.raises(LpdcError, match="bit width"):
        analyze(_conv_graph(), bits=4)


def test_plot_is_a_real_png(tmp_path):
    import matplotlib.image as mpimg

    path = plot_analysis(analyze(lpdc.load("zoo:tiny_cnn"), bits=1), tmp_path / "a.png")
    img = mpimg.imread(path)
    assert img.shape[0] > 300 and img.shape[1] > 500
    assert img[..., :3].std() > 0.05  # bars and text, not a blank canvas
    with pytest.raises(LpdcError, match="cannot write the plot"):
        plot_analysis(analyze(_conv_graph()), tmp_path / "a.unknownformat")


# name -> (published parameters, published MACs)
PUBLISHED = {
    "alexnet": (61.0e6, 0.72e9),
    "vgg16": (138.0e6, 15.5e9),
    "resnet50": (25.6e6, 4.1e9),
    "mobilenet_v1": (4.2e6, 0.57e9),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_zoo_models_match_published_figures(name):
    from lpdc.tools.zoo import MODELS

    if name not in MODELS:
        pytest.skip(f"zoo model {name!r} is not in lpdc.tools.zoo.MODELS in this build")
    params, macs = PUBLISHED[name]
    t = analyze(lpdc.load(f"zoo:{name}")).total
    assert t.params == pytest.approx(params, rel=0.03), f"{name}: {t.params / 1e6:.2f}M parameters"
    assert t.macs == pytest.approx(macs, rel=0.03), f"{name}: {t.macs / 1e9:.3f} GMACs"
    assert t.peak_live_bytes <= t.arena_bytes < t.activation_bytes
