"""What a JSON schema may say when an answer must follow it (`response_format` `json_schema`).

The answer is constrained while it is written: the schema becomes a grammar (in the worker, with
llama.cpp's converter), and every token the model picks must keep the text inside it. A schema keyword the
grammar cannot express would be dropped silently by the converter, so an answer could break it; this module
refuses such schemas up front, with the keyword and where it is, instead.
"""

from __future__ import annotations

import json
import re
from typing import Any

from xitui.core.errors import XituiError

#: Keywords the grammar enforces.
ENFORCED = frozenset({
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref", "$defs", "definitions", "minLength", "maxLength",
    "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
})
#: Bounds on a number (pydantic's `Field(ge=0, le=150)`): llguidance holds integers and numbers to them.
BOUNDS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum")
#: The largest bound taken: a JSON number past 2**53 is not exact in most clients' hands anyway.
MAX_BOUND = 2.0**53
#: Keywords whose values are data, not schemas: a "$ref" key inside them is a value's, not a reference.
DATA = frozenset({"enum", "const", "default", "examples"})
#: Keywords that say something about the value without constraining it (kept, never enforced).
ANNOTATIONS = frozenset({
    "title", "description", "default", "examples", "$schema", "$id", "$comment", "deprecated", "readOnly",
    "writeOnly", "strict", "discriminator",
})
#: String formats the grammar writes (others, such as email or uri, would only be strings).
FORMATS = frozenset({"date", "time", "date-time", "uuid", "uuid1", "uuid2", "uuid3", "uuid4", "uuid5"})
TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
#: A schema's size and nesting, well past what applications send, well short of what would slow the server.
MAX_BYTES = 64 * 1024
MAX_DEPTH = 32


class SchemaError(XituiError):
    """The schema cannot be enforced while the answer is written (one line: the keyword and where)."""


def check_schema(schema: Any, where: str = "schema") -> None:
    """Raise SchemaError unless every keyword of `schema` is one the grammar enforces (or an annotation), and
    every reference finds its target without coming back to itself before a value is written."""
    if len(json.dumps(schema)) > MAX_BYTES:
        raise SchemaError(f"{where}: longer than {MAX_BYTES // 1024} KiB")
    _check(schema, where, 0)
    _check_refs(schema, where)


def resolve(root: Any, ref: str) -> Any:
    """The node a local reference (`#`, `#/$defs/Name/...`: RFC 6901, ~0 and ~1 escaped) points at in `root`;
    KeyError where it points at nothing."""
    node = root
    for token in ref[2:].split("/") if ref != "#" else []:
        token = token.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list) and token.isdigit() and int(token) < len(node):
            node = node[int(token)]
        else:
            raise KeyError(ref)
    return node


def _only_ref(node: Any) -> str | None:
    """The reference a schema is nothing but (besides annotations; or a choice of one that is): it writes no
    value of its own before it."""
    if not isinstance(node, dict):
        return None
    keys = set(node) - ANNOTATIONS - {"$defs", "definitions"}
    if keys == {"$ref"} and isinstance(node["$ref"], str):
        return node["$ref"]
    if len(keys) == 1 and keys & {"anyOf", "oneOf", "allOf"}:
        choices = node[keys.pop()]
        if isinstance(choices, list) and len(choices) == 1:
            return _only_ref(choices[0])
    return None


def _check_refs(schema: Any, where: str) -> None:
    """Every `$ref` has a target, and a chain of schemas that are only references never comes back to one it
    passed (A is B, B is A: llguidance failed on it only while the answer was written)."""
    def refs(node: Any, here: str) -> Any:
        if isinstance(node, list):
            for i, item in enumerate(node):
                yield from refs(item, f"{here}[{i}]")
        elif isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref" and isinstance(value, str):
                    yield value, f"{here}.$ref"
                elif key not in DATA:
                    yield from refs(value, f"{here}.{key}")

    good: set[str] = set()  # references whose chain ends in a value (each chain is walked once)
    for ref, here in refs(schema, where):
        seen = [ref]
        while seen[-1] not in good:
            try:
                target = resolve(schema, seen[-1])
            except KeyError:
                raise SchemaError(f"{here}: {seen[-1][:100]!r} points at nothing in the schema") from None
            following = _only_ref(target)
            if following is None:
                break
            if following in seen:
                raise SchemaError(f"{here}: {ref[:100]!r} is a chain of references that comes back to itself "
                                  "before any value")
            seen.append(following)
        good.update(seen)


def object_schema(schema: Any) -> bool:
    """Whether `schema` (a tool's parameters, checked) may describe an object: its type, or the type of what
    it is only a reference to, says object or says nothing."""
    node, hops = schema, 0
    while (ref := _only_ref(node)) is not None and hops < 1000:
        node, hops = resolve(schema, ref), hops + 1
    if not isinstance(node, dict):
        return node is not False
    kind = node.get("type")
    return kind is None or kind == "object" or (isinstance(kind, list) and "object" in kind)


def _check(node: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise SchemaError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, bool):
        return  # `true` (anything) and `false` (nothing), as additionalProperties takes them
    if not isinstance(node, dict):
        raise SchemaError(f"{where}: a schema is an object, not {type(node).__name__}")
    for key, value in node.items():
        here = f"{where}.{key}"
        if key in ANNOTATIONS:
            continue
        if key not in ENFORCED:
            raise SchemaError(f"{here}: {key!r} cannot be enforced while the answer is written "
                              f"(enforced: {', '.join(sorted(ENFORCED))})")
        if key == "type":
            kinds = value if isinstance(value, list) else [value]
            unknown = [k for k in kinds if k not in TYPES]
            if unknown:
                raise SchemaError(f"{here}: unknown type {unknown[0]!r}")
        elif key == "format" and value not in FORMATS:
            raise SchemaError(f"{here}: format {value!r} cannot be enforced (enforced: {', '.join(sorted(FORMATS))})")
        elif key == "pattern":
            if not isinstance(value, str) or not (value.startswith("^") and value.endswith("$")):
                raise SchemaError(f"{here}: a pattern must match the whole string (start with ^, end with $)")
            try:
                re.compile(value)
            except re.error as exc:
                raise SchemaError(f"{here}: not a regular expression ({exc})") from None
        elif key == "$ref":
            if not isinstance(value, str) or not (value == "#" or value.startswith("#/")):
                raise SchemaError(f"{here}: only references inside the schema (#, #/...) are followed")
        elif key in ("properties", "$defs", "definitions"):
            if not isinstance(value, dict):
                raise SchemaError(f"{here}: must be an object")
            for name, sub in value.items():
                _check(sub, f"{here}.{name}", depth + 1)
        elif key in ("items", "additionalProperties"):
            if isinstance(value, list):  # the old tuple form of items
                for i, sub in enumerate(value):
                    _check(sub, f"{here}[{i}]", depth + 1)
            else:
                _check(value, here, depth + 1)
        elif key in ("prefixItems", "anyOf", "oneOf", "allOf"):
            if not isinstance(value, list) or not value:
                raise SchemaError(f"{here}: must be a non-empty list of schemas")
            for i, sub in enumerate(value):
                _check(sub, f"{here}[{i}]", depth + 1)
        elif key in ("minItems", "maxItems", "minLength", "maxLength"):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
                raise SchemaError(f"{here}: a whole number from 0 to 100000")
        elif key in BOUNDS:
            if isinstance(value, bool) or not isinstance(value, int | float) or not abs(value) <= MAX_BOUND:
                raise SchemaError(f"{here}: a number from -2**53 to 2**53")
        elif key == "required" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            raise SchemaError(f"{here}: a list of property names")
        elif key == "enum" and not (isinstance(value, list) and value):
            raise SchemaError(f"{here}: a non-empty list")
