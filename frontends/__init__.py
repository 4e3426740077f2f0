"""Frontends: Caffe and ONNX into the IR."""
