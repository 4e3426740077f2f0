"""Fuzzing the Caffe frontend: mutated corpus prototxts, random text, deep nesting, mutated and
hostile caffemodels (huge / negative blob shapes, NaN weights). Every input ends in a graph or
an LpdcError with a message, within a per-input time bound."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from fuzz_util import loads_or_lpdc_error, measured
from hypothesis import given, settings
from hypothesis import strategies as st
from lpdc.errors import LpdcLimitError, LpdcParseError
from lpdc.frontends.caffe import load_caffe
from lpdc.frontends.caffe.reader import parse_prototxt, read_caffemodel
from lpdc.frontends.caffe.schema import message_class
from lpdc.tools.caffe_weights import blob_message, random_caffemodel

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "models" / "caffe"
SMALL = ["lenet.deploy.prototxt", "lenet.v0.deploy.prototxt", "lenet.v1.deploy.prototxt",
         "cifar10_quick.deploy.prototxt", "cifar10_quick.v1.deploy.prototxt", "mnist_siamese.deploy.prototxt",
         "squeezenet_v1.1.deploy.prototxt"]
TEXTS = {n: (CORPUS / n).read_text() for n in SMALL if (CORPUS / n).is_file()}
needs_corpus = pytest.mark.skipif(not TEXTS, reason=f"Caffe corpus not found at {CORPUS}")
PIECES = ["{", "}", ":", '"', " 0", " -1", " 1099511627776", "layer {", 'bottom: "data"', 'top: "x"',
          "num_output: 0", "kernel_size: 0", "stride: 0", "group: 7", "pad: -3", "dim: 0", "dim: -1",
          'type: "Pooling"', 'type: "Eltwise"', 'type: "Concat"', "axis: 9", "nan", "inf", 'type: "Reshape"',
          'type: "Slice"', "slice_point: 100", "global_pooling: true", "dilation: 0", 'type: "Deconvolution"',
          'type: "InnerProduct"', 'type: "Crop"', "\n"]
NUMBERS = [0, 1, 2, 5, 100, 2**31, 2**40, 2**64]

NET = """name: "small"
layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 2 dim: 6 dim: 6 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 3 kernel_size: 3 } }
layer { name: "bn" type: "BatchNorm" bottom: "conv" top: "conv" }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "fc" type: "InnerProduct" bottom: "conv" top: "fc" inner_product_param { num_output: 4 } }
"""


def _mutate_text(text: str, edits: list[tuple[str, int, int]]) -> str:
    for kind, pos, k in edits:
        i = pos % len(text)
        if kind == "delete":
            text = text[:i] + text[i + 1 + k % 40:]
        elif kind == "insert":
            text = text[:i] + PIECES[k % len(PIECES)] + text[i:]
        elif kind == "number":
            nums = [m.span() for m in re.finditer(r"\b\d+\b", text)]
            if nums:
                a, b = nums[pos % len(nums)]
                text = text[:a] + str(NUMBERS[k % len(NUMBERS)]) + text[b:]
        else:  # duplicate a slice (whole layers, half layers)
            j = min(len(text), i + 1 + k % 300)
            text = text[:j] + text[i:j] + text[j:]
    return text


EDITS = st.lists(st.tuples(st.sampled_from(["delete", "insert", "number", "duplicate"]), st.integers(0, 10**6),
                           st.integers(0, 1000)), min_size=1, max_size=4)


@needs_corpus
@settings(max_examples=150)
@given(name=st.sampled_from(sorted(TEXTS)), edits=EDITS)
def test_mutated_corpus_prototxts_load_or_raise(tmp_path_factory, name, edits):
    p = tmp_path_factory.mktemp("p") / "net.prototxt"
    p.write_text(_mutate_text(TEXTS[name], edits))
    loads_or_lpdc_error(lambda: load_caffe(p, random_weights=True))


@settings(max_examples=150)
@given(edits=EDITS)
def test_mutated_inline_prototxt_loads_or_raises(tmp_path_factory, edits):
    p = tmp_path_factory.mktemp("i") / "net.prototxt"
    p.write_text(_mutate_text(NET, edits))
    loads_or_lpdc_error(lambda: load_caffe(p, random_weights=True))


@settings(max_examples=100)
@given(st.text(max_size=300))
def test_random_text_raises_lpdc_error(text):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert loads_or_lpdc_error(lambda: parse_prototxt(text)) in ("ok", "LpdcParseError", "LpdcLimitError")


@pytest.fixture(scope="module")
def small_model(tmp_path_factory) -> tuple[Path, bytes]:
    d = tmp_path_factory.mktemp("cm")
    (d / "net.prototxt").write_text(NET)
    random_caffemodel(d / "net.prototxt", d / "net.caffemodel", seed=3)
    return d / "net.prototxt", (d / "net.caffemodel").read_bytes()


@settings(max_examples=150)
@given(edits=st.lists(st.tuples(st.sampled_from(["flip", "delete", "insert"]), st.integers(0, 10**9),
                                st.binary(min_size=1, max_size=8)), min_size=1, max_size=5))
def test_byte_mutated_caffemodels_load_or_raise(small_model, tmp_path_factory, edits):
    proto, good = small_model
    data = bytearray(good)
    for kind, pos, piece in edits:
        i = pos % len(data)
        if kind == "flip":
            data[i] ^= piece[0] or 1
        elif kind == "delete":
            del data[i:i + len(piece) * 7]
        else:
            data[i:i] = piece
    model = tmp_path_factory.mktemp("m") / "net.caffemodel"
    model.write_bytes(bytes(data))
    loads_or_lpdc_error(lambda: load_caffe(proto, weights=model))


def _model_with_blob(tmp: Path, dims: list[int], values: np.ndarray) -> Path:
    """A caffemodel whose 'fc' layer has one blob with declared `dims` and the given data."""
    net = message_class("NetWeights")(name="small")
    layer = net.layer.add(name="fc", type="InnerProduct")
    blob = blob_message(values)
    del blob.shape.dim[:]
    blob.shape.dim.extend(dims)
    layer.blobs.append(blob)
    p = tmp / "hostile.caffemodel"
    p.write_bytes(net.SerializeToString())
    return p


def test_huge_declared_blob_refused_fast_in_bounded_memory(tmp_path):
    p = _model_with_blob(tmp_path, [2**20, 2**20], np.zeros(4, np.float32))
    err, seconds, peak = measured(lambda: read_caffemodel(p))
    assert isinstance(err, LpdcLimitError) and "1099511627776 elements" in str(err), err
    assert seconds < 5 and peak < 200 * 2**20
    with pytest.raises(LpdcParseError, match="negative dimension"):
        read_caffemodel(_model_with_blob(tmp_path, [-4, -1], np.zeros(4, np.float32)))
    # 2^32 * 2^32 wraps to 0 in int64 and used to match an empty blob: now the exact count is used.
    with pytest.raises(LpdcLimitError, match="over the limit"):
        read_caffemodel(_model_with_blob(tmp_path, [2**32, 2**32], np.zeros(0, np.float32)))


def test_regression_random_weights_for_a_huge_layer_are_refused_not_allocated(tmp_path):
    # Found by fuzzing: num_output: 2147483648 made random_weights allocate 24 PiB (MemoryError).
    p = tmp_path / "big.prototxt"
    p.write_text(NET.replace("num_output: 4", "num_output: 2147483648"))
    err, seconds, peak = measured(lambda: load_caffe(p, random_weights=True))
    assert isinstance(err, LpdcLimitError) and "layer 'fc'" in str(err) and "over the limit" in str(err), err
    assert seconds < 5 and peak < 200 * 2**20


def test_regression_deep_nesting_is_a_limit_error_not_a_recursion_error():
    # Found by fuzzing: protobuf's text parser recursed per nested block (RecursionError at ~500).
    text = 'layer { name: "a" ' + "foo { " * 5000 + "}" * 5000 + " }"
    with pytest.raises(LpdcLimitError, match="nested deeper than 100 levels"):
        parse_prototxt(text, "deep.prototxt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # `foo` is not in the schema: warned and skipped
        parse_prototxt('layer { name: "a" ' + "foo { " * 50 + "}" * 50 + " }")  # moderate nesting still parses


def test_nan_weights_load_with_a_warning(small_model, tmp_path):
    proto, _ = small_model
    from lpdc.frontends.caffe import load_caffe_parts
    from lpdc.tools.caffe_weights import write_caffemodel

    _, net, ws = load_caffe_parts(proto, random_weights=True, record=True)
    blobs = {k: [a.copy() for a in v] for k, v in ws.issued.items()}
    blobs["fc"][0][0, :3] = [np.nan, np.inf, -np.inf]
    write_caffemodel(net, blobs, tmp_path / "nan.caffemodel")
    with pytest.warns(RuntimeWarning, match=r"1 weight tensor\(s\) hold NaN or infinite values.*'fc/0' \(3\)"):
        g = load_caffe(proto, weights=tmp_path / "nan.caffemodel")
    w = next(a for k, a in g.params.items() if k.startswith("fc"))
    assert np.isnan(w).sum() == 1 and np.isinf(w).sum() == 2
