"""Gemma's tool-call syntax (FunctionGemma, Gemma 4): not JSON, so it is written, read and forced here.

A call is `call:NAME{key:VALUE,...}` between the format's markers; keys are bare, strings sit between an
escape token instead of quotes (a string may then hold quotes, backslashes and newlines as they are), numbers,
booleans, null, lists and nested objects are written as in JSON:

- `functiongemma`: `<start_function_call>call:get_weather{city:<escape>Paris<escape>}<end_function_call>`
- `gemma` (Gemma 4): `<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>`

Xinference's `gemma` tool parser reads the second; FunctionGemma (Gemma 3 270M tuned for calls) writes the first.
"""

from __future__ import annotations

import json
import re
from typing import Any

from xitui.core.chat_format import strict_json
from xitui.core.chat_format.json_schema import ANNOTATIONS, BOUNDS

#: format -> (call start, call end, string delimiter)
TOKENS = {
    "functiongemma": ("<start_function_call>", "<end_function_call>", "<escape>"),
    "gemma": ("<|tool_call>", "<tool_call|>", '<|"|>'),
}
_BARE_KEY = re.compile(r"([{,]\s*)([A-Za-z_][\w.\-]*)\s*:")
#: A key the grammar writes and the reader reads back (the `key` rule below, ASCII).
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_HEADER = re.compile(r"\s*call\s*:\s*([^{\s]+)\s*")


# --- writing ---------------------------------------------------------------------------------------------

def write_value(value: Any, fmt: str) -> str:
    """A JSON value in Gemma's syntax."""
    esc = TOKENS[fmt][2]
    if isinstance(value, str):
        return f"{esc}{value}{esc}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{key}:{write_value(item, fmt)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(write_value(item, fmt) for item in value) + "]"
    return json.dumps(value)


def write_call(name: str, arguments: Any, fmt: str) -> str:
    start, end, _ = TOKENS[fmt]
    args = arguments if isinstance(arguments, dict) else {}
    return f"{start}call:{name}{write_value(args, fmt)}{end}"


# --- reading ---------------------------------------------------------------------------------------------

def read_call(text: str, fmt: str) -> tuple[str, dict[str, Any]] | None:
    """(name, arguments) of the text between a call's markers; None when it is not a call."""
    found = _HEADER.match(text)
    if not found:
        return None
    body = text[found.end():].strip()
    if not body:
        return found.group(1), {}
    try:  # standard JSON only, nesting bounded (core/chat_format/strict_json.py)
        args = strict_json.loads(_as_json(body, TOKENS[fmt][2]))
    except ValueError:
        return None
    return (found.group(1), args) if isinstance(args, dict) else None


def _as_json(text: str, esc: str) -> str:
    """Gemma's syntax as JSON. Split on the string delimiter, the even parts are structure (bare keys get
    quotes) and the odd parts are strings, encoded whole: a string holding `a,b:c` is never read as a key."""
    parts = text.split(esc)
    if len(parts) % 2 == 0:
        raise ValueError("a string is not closed")
    return "".join(json.dumps(part) if i % 2 else _BARE_KEY.sub(r'\1"\2":', part) for i, part in enumerate(parts))


# --- forcing ---------------------------------------------------------------------------------------------

#: Schema keywords the grammar below cannot hold a value to (a forced call with one is refused, not loosened).
UNHELD = ("allOf", "pattern", "format", "prefixItems", *BOUNDS)


class _Rules:
    """GBNF rules for a value of a JSON schema, in Gemma's syntax. Keys are written in the schema's order (the
    optional ones may be left out); a string has no `<` in it when its length is bounded (otherwise no
    delimiter), and the keywords in UNHELD raise ValueError."""

    def __init__(self, fmt: str, defs: Any = None):
        esc = TOKENS[fmt][2]
        #: The call schema's definitions (tool_calls.call_schema hoists the tools' there), and the rule each
        #: one referenced so far became (a definition that refers to itself is a rule that names itself).
        self.defs: dict[str, Any] = defs if isinstance(defs, dict) else {}
        self.defined: dict[str, str] = {}
        self.aliases: dict[str, str] = {}
        # a string's text: anything but the delimiter (held to: no '<' that starts it)
        self.rules: dict[str, str] = {
            "str": f'{_lit(esc)} ([^<] | "<" [^{_class(esc[1])}])* {_lit(esc)}',
            "int": '"-"? [0-9]+',
            "num": '"-"? [0-9]+ ("." [0-9]+)? ([eE] [-+]? [0-9]+)?',
            "bool": '"true" | "false"',
            "null": '"null"',
            "key": "[A-Za-z_] [A-Za-z0-9_.-]*",
            "any": "str | num | bool | null | anyobj | anylist",
            "anyobj": '"{" (key ":" any ("," key ":" any)*)? "}"',
            "anylist": '"[" (any ("," any)*)? "]"',
        }
        self.fmt = fmt

    def value(self, schema: Any) -> str:
        """The rule name for values of `schema`."""
        if schema is False:
            raise ValueError("a false schema (no value fits it) cannot be called with")
        if not isinstance(schema, dict):
            return "any"
        unheld = [key for key in UNHELD if key in schema]
        if unheld:
            raise ValueError(f"{unheld[0]!r} cannot be held to in Gemma's call syntax")
        if "$ref" in schema:
            beside = sorted(set(schema) - {"$ref"} - ANNOTATIONS)
            if beside:
                raise ValueError(f"{beside[0]!r} beside a '$ref' cannot be held to in Gemma's call syntax")
            return self._defined(schema["$ref"])
        if "const" in schema:
            return self._add(_lit(write_value(schema["const"], self.fmt)))
        if isinstance(schema.get("enum"), list) and schema["enum"]:
            return self._add(" | ".join(_lit(write_value(v, self.fmt)) for v in schema["enum"]))
        for key in ("anyOf", "oneOf"):
            if isinstance(schema.get(key), list) and schema[key]:
                return self._add(" | ".join(self.value(s) for s in schema[key]))
        kind = schema.get("type")
        if isinstance(kind, list):
            return self._add(" | ".join(self.value({**schema, "type": k}) for k in kind)) if kind else "any"
        if kind == "object" or "properties" in schema:
            return self._object(schema)
        if kind == "array":
            return self._array(schema)
        if kind == "string" and ("minLength" in schema or "maxLength" in schema):
            esc = _lit(TOKENS[self.fmt][2])
            low, high = int(schema.get("minLength") or 0), schema.get("maxLength")
            count = f"{{{low},{int(high)}}}" if high is not None else f"{{{low},}}"
            return self._add(f"{esc} [^<]{count} {esc}")
        if not isinstance(kind, str):  # no type, or not a name (a malformed `"type": {...}` is unhashable)
            return "any"
        return {"string": "str", "integer": "int", "number": "num", "boolean": "bool", "null": "null"}.get(kind, "any")

    def _object(self, schema: dict[str, Any]) -> str:
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            return "anyobj"
        unwritable = [k for k in props if not _KEY.fullmatch(k)]
        if unwritable:
            raise ValueError(f"the property name {unwritable[0][:100]!r} cannot be written in Gemma's call syntax "
                             "(its keys are bare: letters, digits, _ . -)")
        required = [k for k in props if k in (schema.get("required") or [])]
        optional = [k for k in props if k not in required]
        pair = {k: f"{_lit(k + ':')} {self.value(props[k])}" for k in props}
        if required:
            body = ' "," '.join(pair[k] for k in required) + "".join(f' ("," {pair[k]})?' for k in optional)
        else:  # any ordered subset of the optional keys, commas between
            body = "(" + " | ".join(
                pair[k] + "".join(f' ("," {pair[o]})?' for o in optional[i + 1:]) for i, k in enumerate(optional)
            ) + ")?"
        return self._add(f'"{{" {body} "}}"')

    def _array(self, schema: dict[str, Any]) -> str:
        item = self.value(schema.get("items"))
        low = max(0, int(schema.get("minItems") or 0))
        high = schema.get("maxItems")
        if high is None:
            rest = f'("," {item})*'
            body = f"{item} {rest}" if low <= 1 else " \",\" ".join([item] * low) + f" {rest}"
            return self._add(f'"[" ({body}){"" if low else "?"} "]"')
        high = max(int(high), low)
        if high == 0:
            return self._add('"[" "]"')
        # counted repetition: the grammar grows with neither bound (a choice per count grew with its square)
        body = f'{item} ("," {item}){{{max(low - 1, 0)},{high - 1}}}'
        return self._add(f'"[" ({body}){"" if low else "?"} "]"')

    def _defined(self, ref: Any) -> str:
        """The rule for a reference to one of the call schema's definitions (`#/$defs/NAME`)."""
        name = ref[len("#/$defs/"):].replace("~1", "/").replace("~0", "~") if isinstance(ref, str) \
            and ref.startswith("#/$defs/") else None
        if name is None or "/" in ref[len("#/$defs/"):] or name not in self.defs:
            raise ValueError("a '$ref' to a place in the parameters cannot be held to in Gemma's call syntax (a "
                             "reference to one of the parameters' $defs can)")
        if name not in self.defined:
            rule = self.defined[name] = f"d{len(self.defined)}"
            self.rules[rule] = ""  # (named first: the definition may refer to itself)
            body = self.value(self.defs[name])
            # a definition that is only another one's name: the chain of them must not come back to itself
            # (A is B, B is A: a rule that matches nothing, reached without reading a character)
            seen = body
            while seen in self.aliases:
                seen = self.aliases[seen]
            if seen == rule:
                raise ValueError(f"'$ref' {str(ref)[:100]!r}: a definition that is only a reference to itself")
            if body in self.rules:  # only another rule's name, as _add marks them
                self.aliases[rule] = body
            self.rules[rule] = body
        return self.defined[name]

    def _add(self, body: str) -> str:
        name = f"v{len(self.rules)}"
        self.rules[name] = body
        if body in self.rules:  # only another rule's name (a choice of one): _defined follows such chains
            self.aliases[name] = body
        return name


def call_grammar(tools_schema: dict[str, Any], fmt: str, several: bool) -> str:
    """GBNF for a forced answer: one call (or several) to one of the tools of `tools_schema` (the `anyOf` of
    `{"name": {"const": ...}, "arguments": schema}` objects that tool_calls.call_schema makes)."""
    start, end, _ = TOKENS[fmt]
    rules = _Rules(fmt, tools_schema.get("$defs"))
    options = tools_schema.get("anyOf") or [tools_schema]
    heads = []
    for option in options:
        name, args = option["properties"]["name"]["const"], option["properties"]["arguments"]
        is_object = isinstance(args, dict) and (args.get("type") == "object" or "properties" in args
                                                or "$ref" in args)
        heads.append(f'{_lit("call:" + name)} {rules.value(args) if is_object else "anyobj"}')
    one = f"{_lit(start)} ({' | '.join(heads)}) {_lit(end)}"
    root = f"root ::= {one} ({one})*" if several else f"root ::= {one}"
    return "\n".join([root, *(f"{name} ::= {body}" for name, body in rules.rules.items())])


def _lit(text: str) -> str:
    return json.dumps(text)


def _class(char: str) -> str:
    return "\\" + char if char in "]^-\\" else char
