"""The textual IR: `print_graph` writes it, `parse` reads it back exactly.

    graph @net(%x: f32[1,3,8,8]) -> (%y) {
      %w = const @conv1.w : f32[4,3,3,3]
      %c = conv(%x, %w) {pad=[1,1,1,1]} : f32[1,4,8,8]
      %y = relu(%c) : f32[1,4,8,8]
      return %y
    }

Large constants are printed by reference (`@param`, data in `graph.params`); tiny ones inline as
`dense<[...]>`. Attributes equal to their default are omitted. A node whose name differs from its
first output's carries `loc("name")`. Absent optional inputs print as `_`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np

from ..errors import LpdcError, LpdcParseError
from . import dtypes, limits
from .graph import Graph, Node, Value
from .registry import COMMON_ATTRS, get_op
from .types import QuantParams, TensorType

INLINE_MAX = 8  # constants with at most this many elements print inline
_BARE = re.compile(r"^[A-Za-z0-9_.$/-]+$")


# ---- printing ------------------------------------------------------------------------------
def _name(sigil: str, name: str) -> str:
    return sigil + (name if _BARE.match(name) else json.dumps(name))


def _scalar(v: Any) -> str:
    if isinstance(v, bool) or isinstance(v, np.bool_):
        return "true" if v else "false"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        r = repr(f)
        return r if ("." in r or "e" in r) else r + ".0"
    if isinstance(v, str):
        return json.dumps(v)
    if v is None:
        return "none"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_scalar(x) for x in v) + "]"
    raise LpdcParseError(f"cannot print attribute value {v!r}")


def print_type(t: TensorType) -> str:
    s = f"{t.dtype}[{','.join(str(d) for d in t.shape)}]"
    extra = []
    if t.layout is not None:
        extra.append(f"layout={t.layout}")
    if t.quant is not None:
        extra.append(f"scale={_scalar(list(t.quant.scale))}")
        extra.append(f"zp={_scalar(list(t.quant.zero_point))}")
        if t.quant.axis is not None:
            extra.append(f"qaxis={t.quant.axis}")
    return s + (f"<{', '.join(extra)}>" if extra else "")


def _print_attrs(node: Node) -> str:
    decls = {**node.schema.attrs, **COMMON_ATTRS}
    parts = [f"{k}={_scalar(node.attrs[k])}" for k, d in decls.items()
             if k in node.attrs and not _same(node.attrs[k], d.default)]
    return " {" + ", ".join(parts) + "}" if parts else ""


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return type(a) is type(b) and a == b if not isinstance(a, list) else a == b


def _print_node(g: Graph, node: Node) -> str:
    outs = ", ".join(_name("%", v.name) for v in node.outputs)
    types = ", ".join(print_type(v.type) for v in node.outputs)
    if node.op == "const":
        param = node.attrs["param"]
        data = g.params.get(param)
        if data is not None and param == node.output.name and data.size <= INLINE_MAX:
            body = "dense<" + _scalar(data.ravel().tolist()) + ">"
        else:
            body = _name("@", param)
        return f"  {outs} = const {body} : {types}"
    args = ", ".join("_" if v is None else _name("%", v.name) for v in node.inputs)
    loc = f" loc({json.dumps(node.name)})" if node.name != node.outputs[0].name else ""
    return f"  {outs} = {node.op}({args}){_print_attrs(node)} : {types}{loc}"


def print_graph(g: Graph) -> str:
    ins = ", ".join(f"{_name('%', v.name)}: {print_type(v.type)}" for v in g.inputs)
    outs = ", ".join(_name("%", v.name) for v in g.outputs)
    lines = [f"graph {_name('@', g.name)}({ins}) -> ({outs}) {{"]
    lines += [_print_node(g, n) for n in g.nodes]
    lines.append(f"  return {outs}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# ---- parsing -------------------------------------------------------------------------------
_TOKEN = re.compile(r"""
    (?P<ws>[ \t\r]+|//[^\n]*)
  | (?P<nl>\n)
  | (?P<sigil>[%@])(?P<ref>[A-Za-z0-9_.$/-]+|"(?:[^"\\]|\\.)*")
  | (?P<num>-?(?:inf|nan|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?))(?![A-Za-z0-9_])
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<arrow>->)
  | (?P<punct>[(){}\[\]<>,=:])
""", re.VERBOSE)


class _Tokens:
    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self.toks: list[tuple[str, Any, int, int]] = []
        line, col0, pos = 1, 0, 0
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise LpdcParseError(f"unexpected character {text[pos]!r}", where=f"{source}:{line}:{pos - col0 + 1}")
            kind = m.lastgroup if m.lastgroup != "ref" else "sigil"
            col = pos - col0 + 1
            if kind == "nl":
                line, col0 = line + 1, m.end()
            elif kind == "sigil":
                ref = m.group("ref")
                if ref.startswith('"'):
                    try:
                        ref = json.loads(ref)
                    except json.JSONDecodeError as e:
                        raise LpdcParseError(f"bad quoted name ({e.msg})", where=f"{source}:{line}:{col}") from None
                self.toks.append((m.group("sigil"), ref, line, col))
            elif kind != "ws":
                self.toks.append((kind, m.group(0), line, col))
            pos = m.end()
        self.toks.append(("eof", "", line, pos - col0 + 1))
        self.i = 0

    def peek(self, value: str | None = None) -> bool:
        kind, text, _, _ = self.toks[self.i]
        return value is None or text == value and kind in ("punct", "ident", "arrow")

    def next(self) -> tuple[str, Any]:
        tok = self.toks[self.i]
        self.i = min(self.i + 1, len(self.toks) - 1)
        return tok[0], tok[1]

    def error(self, msg: str) -> LpdcParseError:
        _, text, line, col = self.toks[self.i]
        return LpdcParseError(f"{msg} (at {text!r})" if text else f"{msg} (at end of input)",
                              where=f"{self.source}:{line}:{col}")

    def expect(self, value: str) -> None:
        start = self.i
        kind, text = self.next()
        if text != value or kind not in ("punct", "ident", "arrow"):
            self.i = start
            raise self.error(f"expected {value!r}")

    def take(self, kind: str, what: str) -> Any:
        start = self.i
        k, text = self.next()
        if k != kind:
            self.i = start
            raise self.error(f"expected {what}")
        return text


def _string(t: _Tokens, text: str) -> str:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise t.error(f"bad string literal ({e.msg})") from None


def _parse_value(t: _Tokens, depth: int = 0) -> Any:
    if depth > limits.current().max_depth:
        raise t.error(f"values nested deeper than {limits.current().max_depth} levels")
    kind, text = t.next()
    if kind == "num":
        return float(text) if any(c in text for c in ".eEn") else int(text)
    if kind == "str":
        return _string(t, text)
    if kind == "ident" and text in ("true", "false", "none"):
        return {"true": True, "false": False, "none": None}[text]
    if kind == "ident":
        return text  # bare words (layout names)
    if text == "[":
        items: list[Any] = []
        while not t.peek("]"):
            items.append(_parse_value(t, depth + 1))
            if not t.peek("]"):
                t.expect(",")
        t.expect("]")
        return items
    t.i -= 1
    raise t.error("expected a value")


def _parse_dict(t: _Tokens, close: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    while not t.peek(close):
        key = t.take("ident", "an attribute name")
        t.expect("=")
        out[key] = _parse_value(t)
        if not t.peek(close):
            t.expect(",")
    t.expect(close)
    return out


def _parse_type(t: _Tokens) -> TensorType:
    dt = t.take("ident", "a dtype")
    if not dtypes.is_valid(dt):
        t.i -= 1
        raise t.error(f"unknown dtype {dt!r}")
    t.expect("[")
    shape = []
    while not t.peek("]"):
        shape.append(_parse_value(t))
        if not t.peek("]"):
            t.expect(",")
    t.expect("]")
    extra: dict[str, Any] = {}
    if t.peek("<"):
        t.next()
        extra = _parse_dict(t, ">")
    quant = None
    if "scale" in extra:
        quant = QuantParams(tuple(float(s) for s in extra["scale"]), tuple(extra.get("zp", [])), extra.get("qaxis"))
    if not all(isinstance(d, int) for d in shape):
        raise t.error(f"shape dimensions must be integers, got {shape}")
    return TensorType(tuple(shape), dt, extra.get("layout"), quant)


def _parse_names(t: _Tokens) -> list[str]:
    names = [t.take("%", "a %value")]
    while t.peek(","):
        t.next()
        names.append(t.take("%", "a %value"))
    return names


def _parse_node(t: _Tokens, g: Graph, params: dict[str, np.ndarray]) -> None:
    outs = _parse_names(t)
    t.expect("=")
    op = t.take("ident", "an op name")
    if op == "const":
        _parse_const(t, g, outs, params)
        return
    t.expect("(")
    args: list[Value | None] = []
    while not t.peek(")"):
        kind, text = t.next()
        if kind == "ident" and text == "_":
            args.append(None)
        elif kind == "%":
            if text not in g._values:
                t.i -= 1
                raise t.error(f"value %{text} is used before it is defined")
            args.append(g._values[text])
        else:
            t.i -= 1
            raise t.error("expected a %value or _")
        if not t.peek(")"):
            t.expect(",")
    t.expect(")")
    attrs = _parse_dict(t, "}") if (t.peek("{") and t.next()) else {}
    t.expect(":")
    types = [_parse_type(t)]
    while t.peek(","):
        t.next()
        types.append(_parse_type(t))
    name = None
    if t.peek("loc"):
        t.next()
        t.expect("(")
        name = _string(t, t.take("str", "a quoted node name"))
        t.expect(")")
    node = g.add_node(op, args, attrs, outputs=outs, types=types)
    node.name = name or node.outputs[0].name
    if [v.name for v in node.outputs] != outs:
        raise t.error(f"value {outs} defined twice")


def _parse_const(t: _Tokens, g: Graph, outs: list[str], params: dict[str, np.ndarray]) -> None:
    if t.peek("dense"):
        t.next()
        t.expect("<")
        values = _parse_value(t)
        t.expect(">")
        t.expect(":")
        ty = _parse_type(t)
        try:
            data = np.asarray(values, dtype=dtypes.to_numpy(ty.dtype))
        except (ValueError, TypeError, OverflowError) as e:
            raise t.error(f"bad dense<...> values for {print_type(ty)}: {e}") from None
        if data.ndim != 1 or data.size != ty.size:
            raise t.error(f"dense<...> holds {data.size} values, type {print_type(ty)} needs {ty.size}")
        data = data.reshape(ty.shape)
        param = outs[0]
    else:
        param = t.take("@", "@param or dense<...>")
        t.expect(":")
        ty = _parse_type(t)
        if param not in params:
            raise t.error(f"constant @{param} has no data (pass params= to parse)")
        data = params[param]
        if tuple(data.shape) != ty.shape or data.dtype != dtypes.to_numpy(ty.dtype):
            raise t.error(f"@{param} data is {data.dtype}{list(data.shape)}, text says {print_type(ty)}")
    if outs[0] in g._values:
        raise t.error(f"value %{outs[0]} defined twice")
    node = Node("const", outs[0], get_op("const").normalize_attrs({"param": param}))
    node.outputs = [g._new_value(outs[0], ty, node)]
    g.nodes.append(node)
    g.params[param] = data


def parse(text: str, params: dict[str, np.ndarray] | None = None, *, source: str = "<ir>",
          verify: bool = True) -> Graph:
    """Read textual IR; constants printed by reference take their data from `params`."""
    t = _Tokens(text, source)
    try:
        t.expect("graph")
        g = Graph(t.take("@", "@graph_name"))
        t.expect("(")
        while not t.peek(")"):
            name = t.take("%", "an input %name")
            t.expect(":")
            g.add_input(name, _parse_type(t))
            if not t.peek(")"):
                t.expect(",")
        t.expect(")")
        t.expect("->")
        t.expect("(")
        declared = _parse_names(t) if not t.peek(")") else []
        t.expect(")")
        t.expect("{")
        while not t.peek("return"):
            _parse_node(t, g, params or {})
        t.expect("return")
        returned = _parse_names(t) if t.peek() and t.toks[t.i][0] == "%" else []
        t.expect("}")
        if t.toks[t.i][0] != "eof":
            raise t.error("text after the end of the graph")
        if returned != declared:
            raise t.error(f"return {returned} differs from the declared outputs {declared}")
        missing = [n for n in returned if n not in g._values]
        if missing:
            raise LpdcParseError(f"returned value %{missing[0]} is never defined", where=source)
        g.set_outputs(g._values[n] for n in returned)
    except LpdcParseError:
        raise
    except LpdcError as e:
        raise LpdcParseError(e.message if e.where is None else f"{e.where}: {e.message}",
                             where=f"{source}:{t.toks[t.i][2]}") from None
    if verify:
        g.verify()
    return g
