"""A reader for the small proto2 subset caffe.proto is written in, producing protobuf descriptors.

Why not a generated `caffe_pb2.py`: generated code pins the protoc version (protobuf >= 5.26
gencode refuses older runtimes), while descriptors built at import time work with every runtime
in pyproject's range and keep `caffe.proto` the single, readable source of the schema.

Supported: `syntax`, `package`, top-level `message` and `enum`, enums nested in messages,
`optional`/`repeated`/`required` fields of scalar, message or enum type (dotted names such as
`PriorBoxParameter.CodeType` included), and the `default` and `packed` options. `//` comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from google.protobuf import descriptor_pb2

_FDP = descriptor_pb2.FieldDescriptorProto
SCALARS = {
    "double": _FDP.TYPE_DOUBLE, "float": _FDP.TYPE_FLOAT, "int64": _FDP.TYPE_INT64, "uint64": _FDP.TYPE_UINT64,
    "int32": _FDP.TYPE_INT32, "uint32": _FDP.TYPE_UINT32, "bool": _FDP.TYPE_BOOL, "string": _FDP.TYPE_STRING,
    "bytes": _FDP.TYPE_BYTES, "fixed32": _FDP.TYPE_FIXED32, "fixed64": _FDP.TYPE_FIXED64,
    "sfixed32": _FDP.TYPE_SFIXED32, "sfixed64": _FDP.TYPE_SFIXED64, "sint32": _FDP.TYPE_SINT32,
    "sint64": _FDP.TYPE_SINT64,
}
_LABELS = {"optional": _FDP.LABEL_OPTIONAL, "repeated": _FDP.LABEL_REPEATED, "required": _FDP.LABEL_REQUIRED}
_TOKEN = re.compile(r"""\s*(?:(//[^\n]*)|("[^"]*"|'[^']*')|([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"""
                    r"""|([A-Za-z_][\w.]*)|([{}=;\[\],]))""")


class ProtoSyntaxError(ValueError):
    """The .proto text uses syntax outside the subset (a bug in the shipped schema, not user input)."""


@dataclass
class _Field:
    label: str
    type: str
    name: str
    number: int
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class _Message:
    name: str
    fields: list[_Field] = field(default_factory=list)
    enums: dict[str, list[tuple[str, int]]] = field(default_factory=dict)


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ProtoSyntaxError(f"cannot read .proto text near {text[pos:pos + 40]!r}")
        pos = m.end()
        tok = next((g for g in m.groups()[1:] if g is not None), None)
        if tok is not None:
            out.append(tok)
    return out


class _Reader:
    def __init__(self, tokens: list[str]) -> None:
        self.toks = tokens
        self.i = 0

    def peek(self) -> str | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, expect: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (expect is not None and tok != expect):
            raise ProtoSyntaxError(f"expected {expect or 'a token'}, got {tok!r} (token {self.i})")
        self.i += 1
        return tok

    def enum_body(self) -> list[tuple[str, int]]:
        self.take("{")
        values = []
        while self.peek() != "}":
            name = self.take()
            self.take("=")
            values.append((name, int(self.take())))
            self.take(";")
        self.take("}")
        return values

    def field(self) -> _Field:
        label, type_, name = self.take(), self.take(), self.take()
        if label not in _LABELS:
            raise ProtoSyntaxError(f"field {name!r}: unknown label {label!r}")
        self.take("=")
        f = _Field(label, type_, name, int(self.take()))
        if self.peek() == "[":
            self.take("[")
            while True:
                key = self.take()
                self.take("=")
                f.options[key] = self.take().strip("\"'")
                if self.take() == "]":
                    break
        self.take(";")
        return f

    def message(self) -> _Message:
        msg = _Message(self.take())
        self.take("{")
        while self.peek() != "}":
            if self.peek() == "enum":
                self.take()
                ename = self.take()
                msg.enums[ename] = self.enum_body()
            else:
                msg.fields.append(self.field())
        self.take("}")
        return msg


def parse_proto(text: str, filename: str = "caffe.proto") -> descriptor_pb2.FileDescriptorProto:
    """The FileDescriptorProto of a .proto file written in the subset described above."""
    r = _Reader(_tokens(text))
    package = ""
    messages: list[_Message] = []
    enums: dict[str, list[tuple[str, int]]] = {}
    while r.peek() is not None:
        tok = r.take()
        if tok in ("syntax", "package"):
            if tok == "syntax":
                r.take("=")
            value = r.take().strip("\"'")
            package = value if tok == "package" else package
            r.take(";")
        elif tok == "message":
            messages.append(r.message())
        elif tok == "enum":
            name = r.take()
            enums[name] = r.enum_body()
        else:
            raise ProtoSyntaxError(f"unexpected {tok!r} at top level")
    return _build(filename, package, messages, enums)


def _build(filename: str, package: str, messages: list[_Message],
           enums: dict[str, list[tuple[str, int]]]) -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name=filename, package=package, syntax="proto2")
    known_msgs = {m.name for m in messages}
    nested = {f"{m.name}.{e}" for m in messages for e in m.enums}
    for name, values in enums.items():
        _add_enum(fdp.enum_type.add(name=name), values)
    for msg in messages:
        mdp = fdp.message_type.add(name=msg.name)
        for ename, values in msg.enums.items():
            _add_enum(mdp.enum_type.add(name=ename), values)
        for f in msg.fields:
            _add_field(mdp.field.add(), f, msg, package, known_msgs, set(enums) | nested)
    return fdp


def _add_enum(edp: descriptor_pb2.EnumDescriptorProto, values: list[tuple[str, int]]) -> None:
    for name, number in values:
        edp.value.add(name=name, number=number)


def _add_field(fd: descriptor_pb2.FieldDescriptorProto, f: _Field, msg: _Message, package: str,
               messages: set[str], enums: set[str]) -> None:
    fd.name, fd.number, fd.label = f.name, f.number, _LABELS[f.label]
    if f.type in SCALARS:
        fd.type = SCALARS[f.type]
    else:
        local = f"{msg.name}.{f.type}"
        if f.type in msg.enums:
            fd.type, fd.type_name = _FDP.TYPE_ENUM, f".{package}.{local}"
        elif f.type in enums:
            fd.type, fd.type_name = _FDP.TYPE_ENUM, f".{package}.{f.type}"
        elif f.type in messages:
            fd.type, fd.type_name = _FDP.TYPE_MESSAGE, f".{package}.{f.type}"
        else:
            raise ProtoSyntaxError(f"field {msg.name}.{f.name}: unknown type {f.type!r}")
    for key, value in f.options.items():
        if key == "default":
            fd.default_value = _default_text(value, fd.type)
        elif key == "packed":
            fd.options.packed = value == "true"
        else:
            raise ProtoSyntaxError(f"field {msg.name}.{f.name}: unsupported option {key!r}")


def _default_text(value: str, ftype: int) -> str:
    """Descriptor defaults are text; floats like `1.` become `1.0`."""
    if ftype in (_FDP.TYPE_FLOAT, _FDP.TYPE_DOUBLE):
        return repr(float(value))
    return value
