"""Backends: numpy (reference), tvm, opencl; targets and devices."""
