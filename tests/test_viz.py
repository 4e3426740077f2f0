"""Graphviz rendering: DOT structure, real SVGs (when `dot` is installed), plan colouring, fallback."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET

import lpdc
import numpy as np
import pytest
from lpdc.errors import LpdcError
from lpdc.ir import Graph, TensorType
from lpdc.passes.plan_memory import plan_memory
from lpdc.tools import viz

needs_dot = pytest.mark.skipif(not viz.dot_available(),
                               reason="Graphviz's dot is not installed (apt-get install graphviz)")


def _planned_graph() -> Graph:
    """conv on a72 in NCHW, a layout_convert to NHWC, relu and pool on mali."""
    g = Graph("planned")
    x = g.add_input("data", TensorType((1, 3, 8, 8)))
    w = g.add_const(np.ones((4, 3, 3, 3), np.float32), "conv.w")
    c = g.op("conv", x, w, name="conv", pad=[1, 1, 1, 1], primitive="im2col_gemm", device="a72")
    t = g.op("layout_convert", c, name="to_nhwc", src="NCHW", dst="NHWC", device="a72")
    r = g.op("relu", t, name="relu", primitive="direct", device="mali")
    g.set_outputs([g.op("global_avg_pool", r, name="gap", device="mali")])
    return g


def _node_names(g: Graph) -> list[str]:
    return [n.name for n in g.nodes if n.op != "const"]


def test_dot_has_every_node_and_edge():
    g = lpdc.load("zoo:tiny_cnn")
    src = viz.to_dot(g).source
    for name in _node_names(g):
        assert f'label="{name}\n' in src, name
    edges = sum(1 for n in g.nodes if n.op != "const" for v in n.inputs
                if v is not None and (v.producer is None or v.producer.op != "const"))
    assert src.count("->") == edges + len(g.outputs)
    assert "conv1.w" not in src and "w 16x3x3x3" in src  # weights folded into their layer's label
    assert "conv1.w" in viz.to_dot(g, show_consts=True).source


def test_plan_view_colours_devices_and_shows_primitives_layouts_and_offsets():
    g = _planned_graph()
    src = viz.to_dot(g, plan=True, memory=plan_memory(g)).source
    assert "primitive: im2col_gemm  layout: NCHW" in src and "primitive: direct  layout: NHWC" in src
    assert "NCHW -> NHWC" in src and "shape=hexagon" in src  # the layout conversion stands out
    colours = {d: re.search(rf'device: {d}".*?fillcolor="(#[0-9a-f]+)"', src, re.S) for d in ("a72", "mali")}
    assert all(colours.values()) and colours["a72"].group(1) != colours["mali"].group(1)
    assert "cluster_legend" in src
    assert re.search(r'label="1x4x8x8 @\d+"', src)  # edge labels carry arena offsets
    assert "primitive:" not in viz.to_dot(g).source


@needs_dot
def test_svg_contains_every_node_name(tmp_path):
    g = lpdc.load("zoo:tiny_cnn")
    out = viz.render(g, tmp_path / "g.svg")
    assert out == tmp_path / "g.svg"
    text = out.read_text()
    root = ET.fromstring(text)
    assert root.tag.endswith("svg")
    titles = {t.text for t in root.iter() if t.tag.endswith("title")}
    assert len([t for t in titles if t and t.startswith("n") and "&" not in t and "->" not in t]) == len(_node_names(g))
    for name in _node_names(g):
        assert f">{html.escape(name)}</text>" in text, name


@needs_dot
def test_svg_of_a_plan_shows_the_convert_node(tmp_path):
    g = _planned_graph()
    text = viz.render(g, tmp_path / "p.svg", plan=True, memory=plan_memory(g)).read_text()
    assert "to_nhwc" in text and "layout_convert" in text and "device: mali" in text
    assert "#fbb4ae" in text  # the convert node's fill


def test_dot_source_and_fallback_without_the_dot_program(tmp_path, monkeypatch):
    g = _planned_graph()
    src = viz.render(g, tmp_path / "g.dot")
    assert src.read_text().startswith("digraph planned {")
    monkeypatch.setattr(viz.shutil, "which", lambda name: None)
    with pytest.warns(viz.DotMissingWarning, match="apt-get install graphviz"):
        out = viz.render(g, tmp_path / "h.svg")
    assert out == tmp_path / "h.dot" and "to_nhwc" in out.read_text() and not (tmp_path / "h.svg").exists()
    with pytest.raises(LpdcError, match="not installed"):
        viz.render(g, tmp_path / "i.svg", strict=True)
    with pytest.raises(LpdcError, match="cannot render to .txt"):
        viz.render(g, tmp_path / "g.txt")
