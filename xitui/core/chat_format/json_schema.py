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
    """Raise SchemaError unless every keyword of `schema` is one the grammar enforces (or an annotation)."""
    if len(json.dumps(schema)) > MAX_BYTES:
        raise SchemaError(f"{where}: longer than {MAX_BYTES // 1024} KiB")
    _check(schema, where, 0)


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
            if not isinstance(value, str) or not value.startswith("#/"):
                raise SchemaError(f"{here}: only references inside the schema (#/...) are followed")
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
