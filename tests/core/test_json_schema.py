"""What a schema may say before it becomes a grammar (core/chat_format/json_schema.py): references that
point at nothing or only at each other are refused up front, in the client's own words."""

from __future__ import annotations

import pytest

from xitui.core.chat_format.json_schema import SchemaError, check_schema, object_schema


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"child": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}},  # the root
    {"$defs": {"A": {"type": "object", "properties": {"b": {"$ref": "#/$defs/B"}}},
               "B": {"type": "array", "items": {"$ref": "#/$defs/A"}}}, "$ref": "#/$defs/A"},  # through values
    {"type": "object", "properties": {"a": {"type": "integer"}, "b": {"$ref": "#/properties/a"}}},
    {"$defs": {"a/b~c": {"type": "string"}}, "properties": {"x": {"$ref": "#/$defs/a~1b~0c"}}},  # escaped
    {"properties": {"x": {"const": {"$ref": "#/nowhere"}}}},  # a value, not a reference
    {"type": "integer", "minimum": -2**53, "exclusiveMaximum": 2.5},
])
def test_references_that_reach_a_value_are_taken(schema: dict) -> None:
    check_schema(schema)


@pytest.mark.parametrize(("schema", "says"), [
    ({"properties": {"a": {"$ref": "#/$defs/Nope"}}}, "schema.properties.a.$ref: '#/$defs/Nope' points at nothing"),
    ({"$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}, "properties": {"a": {"$ref": "#/$defs/A"}}},
     "comes back to itself"),
    ({"$defs": {"A": {"anyOf": [{"$ref": "#/$defs/B"}]}, "B": {"$ref": "#/$defs/A", "title": "b"}},
      "properties": {"a": {"$ref": "#/$defs/A"}}}, "comes back to itself"),
    ({"$ref": "#"}, "comes back to itself"),
    ({"properties": {"a": {"$ref": "https://example.com/s.json"}}}, "only references inside the schema"),
    ({"type": "integer", "minimum": float("nan")}, "a number from -2**53 to 2**53"),
])
def test_references_that_reach_nothing_are_one_line(schema: dict, says: str) -> None:
    with pytest.raises(SchemaError, match=None) as err:
        check_schema(schema)
    assert says in str(err.value) and "\n" not in str(err.value)


def test_a_long_chain_of_references_is_walked_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each reference's chain is followed once, not once per reference that reaches it (1000 of them, each
    naming the next: about 1000 steps, not half a million)."""
    from xitui.core.chat_format import json_schema

    steps = []
    real = json_schema.resolve
    monkeypatch.setattr(json_schema, "resolve", lambda root, ref: steps.append(ref) or real(root, ref))
    defs = {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(1000)} | {"d1000": {"type": "string"}}
    check_schema({"$defs": defs, "$ref": "#/$defs/d0"})
    assert len(steps) <= 2 * 1001


@pytest.mark.parametrize(("schema", "is_object"), [
    ({"type": "object"}, True), ({"properties": {"a": {}}}, True), ({}, True), ({"type": ["object", "null"]}, True),
    ({"$defs": {"P": {"type": "object"}}, "$ref": "#/$defs/P"}, True),
    ({"type": "string"}, False), ({"$defs": {"P": {"type": "string"}}, "$ref": "#/$defs/P"}, False),
])
def test_a_tools_parameters_describe_an_object(schema: dict, is_object: bool) -> None:
    assert object_schema(schema) is is_object
