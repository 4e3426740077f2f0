"""The textual IR prints deterministically and parses back to an identical graph, for every op."""

from __future__ import annotations

import lpdc
import numpy as np
import pytest
from lpdc.errors import LpdcParseError
from lpdc.ir import all_ops, parse
from op_samples import SAMPLES, every_op_graph

STYLE_EXAMPLE = """graph @net(%x: f32[1,3,8,8]) -> (%y) {
  %w = const @conv1.w : f32[4,3,3,3]
  %c = conv(%x, %w) {pad=[1, 1, 1, 1]} : f32[1,4,8,8]
  %y = relu(%c) : f32[1,4,8,8]
  return %y
}
"""


def test_samples_cover_every_registered_op():
    assert set(SAMPLES) == set(all_ops())


def test_round_trip_every_op():
    g = every_op_graph()
    text = str(g)
    back = parse(text, g.params)
    assert str(back) == text
    assert set(back.params) == set(g.params)
    for k, v in g.params.items():
        assert back.params[k].dtype == v.dtype and np.array_equal(back.params[k], v)
    assert [n.op for n in back.nodes] == [n.op for n in g.nodes]
    assert [n.attrs for n in back.nodes] == [n.attrs for n in g.nodes]
    assert {v.name: v.type for v in back.values()} == {v.name: v.type for v in g.values()}
    used = {n.op for n in g.nodes}
    assert used == set(all_ops())


def test_style_example_parses_and_prints_identically():
    w = np.zeros((4, 3, 3, 3), np.float32)
    g = parse(STYLE_EXAMPLE, {"conv1.w": w})
    assert str(g) == STYLE_EXAMPLE
    assert g.nodes[1].attrs["pad"] == [1, 1, 1, 1] and g.nodes[1].attrs["stride"] == [1, 1]


def test_quoted_names_locations_types_and_special_floats():
    g = lpdc.Graph("odd name")
    x = g.add_input("in put", lpdc.TensorType((1, 4, 2, 2), "f32", "NHWC"))
    y = g.op("clip", x, name="conv1/relu:0", min=float("-inf"), max=6.0)
    z = g.op("quantize", y, dtype="i8", scale=[0.1, 0.2, 0.3, 0.4], zero_point=[0, 1, 2, 3], axis=1)
    g.set_outputs([z])
    text = str(g)
    assert '%"in put"' in text and '@"odd name"' in text and "layout=NHWC" in text and "qaxis=1" in text
    back = parse(text)
    assert str(back) == text
    assert back.outputs[0].type == z.type
    assert back.nodes[0].name == "conv1/relu:0"


@pytest.mark.parametrize("text, fragment", [
    ("graph @g(%x: f32[2]) -> (%y) {\n  %y = relu(%z) : f32[2]\n  return %y\n}", "2:"),
    ("graph @g(%x: f32[2]) -> (%y) {\n  %y = relu(%x) : f99[2]\n  return %y\n}", "unknown dtype"),
    ("graph @g(%x: f32[2]) -> (%y) {\n  %y = relu(%x) : f32[2]\n  return %x\n}", "differs"),
    ("graph @g(%x: f32[2]) -> (%y) {\n  %y = relu(%x) ? f32[2]\n  return %y\n}", "unexpected character"),
    ("graph @g(%x: f32[2]) -> (%y) {\n  %y = relu(%x) : f32[2]\n", "end of input"),
    ("graph @g(%x: f32[2]) -> (%y) {\n  %w = const @w : f32[2]\n  %y = add(%x, %w) : f32[2]\n  return %y\n}",
     "no data"),
    ("graph @g(%x: f32[2]) -> (%y) {\n  %y = relu(%x) {alpha=1.0} : f32[2]\n  return %y\n}", "no attribute"),
])
def test_parse_errors_name_line_and_column(text, fragment):
    with pytest.raises(LpdcParseError) as e:
        parse(text)
    assert fragment in str(e.value)
    assert "<ir>:" in str(e.value)


def test_declared_type_mismatch_is_reported():
    text = "graph @g(%x: f32[1,2]) -> (%y) {\n  %y = relu(%x) : f32[1,3]\n  return %y\n}"
    with pytest.raises(lpdc.LpdcError, match="type mismatch on %y"):
        parse(text)
