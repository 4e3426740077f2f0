"""Caffe's message classes, built once from caffe.proto into a private descriptor pool.

A private pool keeps lpdc's `caffe.*` names from clashing with a real Caffe's `caffe_pb2`
registered in the default pool of the same process.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pool, message_factory

from .protoparse import parse_proto

PROTO_PATH = Path(__file__).with_name("caffe.proto")


@cache
def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    pool.Add(parse_proto(PROTO_PATH.read_text(encoding="utf-8"), "lpdc/caffe.proto"))
    return pool


@cache
def message_class(name: str) -> Any:
    """The generated message class of `caffe.<name>` (e.g. "NetParameter")."""
    return message_factory.GetMessageClass(_pool().FindMessageTypeByName(f"caffe.{name}"))


def new(message: str, **fields: Any) -> Any:
    """A new `caffe.<message>` message."""
    return message_class(message)(**fields)


def is_repeated(fd: Any) -> bool:
    """Whether a field is repeated (`label` is deprecated in protobuf 6, `is_repeated` new in it)."""
    flag = getattr(type(fd), "is_repeated", None)
    if flag is None:
        return fd.label == fd.LABEL_REPEATED
    value = fd.is_repeated
    return bool(value() if callable(value) else value)


def enum_name(msg: Any, field: str) -> str:
    """The symbolic name of an enum field's current value (e.g. pool -> "MAX")."""
    fd = msg.DESCRIPTOR.fields_by_name[field]
    return fd.enum_type.values_by_number[getattr(msg, field)].name
