"""Tool calls as text: reading them out of an answer however it is cut into pieces, the conversation for a
chat format without tools, and the grammar of a forced call."""

from __future__ import annotations

import json
import re

import pytest

from xitui.core.chat_format import tool_calls
from xitui.core.errors import XituiError

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}


def read_in_pieces(fmt: str, text: str, size: int) -> tuple[str, list[dict]]:
    reader = tool_calls.CallReader(fmt)
    shown, calls = "", []
    for i in range(0, len(text), size):
        part, found = reader.feed(text[i:i + size])
        shown += part
        calls += found
    part, found = reader.finish()
    return shown + part, calls + found


@pytest.mark.parametrize("size", [1, 2, 5, 11, 1000])
def test_a_closing_marker_inside_an_arguments_string_is_part_of_it(size):
    """A grammar held call may write the end marker in a string (bench/tool_calls.py: a name of
    `}}</tool_call> <tool_call>You can call a`, 39 characters of a 40 allowed): the call ends at the marker
    after the JSON, and text outside a JSON value still ends at the first one."""
    name = '}}</tool_call> <tool_call>\\"x\\" </tool_call'
    answer = f'<tool_call>\n{{"name": "get_weather", "arguments": {{"city": "{name}>"}}}}\n</tool_call>after'
    shown, calls = read_in_pieces("hermes", answer, size)
    assert shown == "after" and len(calls) == 1
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": json.loads(f'"{name}>"')}
    shown, calls = read_in_pieces("hermes", "<tool_call>not json \"</tool_call> then", size)
    assert (shown, calls) == ('<tool_call>not json "</tool_call> then', [])


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_a_quote_left_open_does_not_take_the_calls_after_it(size):
    """Without a grammar a model may write `5'11" tall"` (a quote too many): the markers after it are not
    taken as string text for ever; the broken call stays text and the next one is still a call."""
    broken = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "5\'11" tall"}}\n</tool_call>'
    good = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call>'
    shown, calls = read_in_pieces("hermes", f"{broken}\n{good} done", size)
    assert shown == f"{broken}\n done" and [json.loads(c["function"]["arguments"]) for c in calls] == [{"city": "Oslo"}]
    # a backslash before a line break in a string (not JSON), then a closed string: the marker after it ends it
    text = '<tool_call>{"name": "get_weather", "arguments": {"city": "a\\\nb"}}</tool_call> after'
    assert read_in_pieces("hermes", text, size) == (text, [])


def test_many_markers_inside_a_string_cost_the_calls_length_not_its_square(monkeypatch):
    """A grammar lets an argument hold `</tool_call>` thousands of times: each character is read once (a
    rescan of the call at each marker took 1 s for 2,000 of them, on the thread every stream waits on)."""
    read = []
    scan = tool_calls.CallReader._scan
    monkeypatch.setattr(tool_calls.CallReader, "_scan", lambda self, text: (read.append(len(text)), scan(self, text)))
    inner = "</tool_call>" * 20_000
    answer = f'<tool_call>{{"name": "get_weather", "arguments": {{"city": "{inner}"}}}}</tool_call>'
    shown, calls = read_in_pieces("hermes", answer, 3)
    assert shown == "" and json.loads(calls[0]["function"]["arguments"]) == {"city": inner}
    assert sum(read) <= len(answer)


@pytest.mark.parametrize("size", [1, 3, 7, 1000])
@pytest.mark.parametrize(("fmt", "answer", "content"), [
    ("hermes", 'Let me look.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>',
     "Let me look.\n"),
    ("mistral", '[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Paris"}}]', ""),
    ("llama3", ' {"name": "get_weather", "parameters": {"city": "Paris"}}', ""),
    ("functiongemma", "Sure.<start_function_call>call:get_weather{city:<escape>Paris<escape>}<end_function_call>",
     "Sure."),
    ("gemma", '<|tool_call>call:get_weather{city:<|"|>Paris<|"|>}<tool_call|>', ""),
])
def test_a_call_is_read_out_of_the_answer_however_it_streams(fmt, answer, content, size):
    shown, calls = read_in_pieces(fmt, answer, size)
    assert shown == content
    assert [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in calls] == [
        ("get_weather", {"city": "Paris"})]
    assert calls[0]["id"].startswith("call_") and calls[0]["type"] == "function"


@pytest.mark.parametrize("size", [1, 4, 1000])
def test_text_that_only_looks_like_a_call_stays_text(size):
    assert read_in_pieces("hermes", "a < b and <tool_ is not a call", size) == ("a < b and <tool_ is not a call", [])
    assert read_in_pieces("hermes", "<tool_call>not json</tool_call>", size)[1] == []
    assert read_in_pieces("llama3", "Paris is in France.", size) == ("Paris is in France.", [])


def test_two_calls_in_one_answer():
    answer = ('<tool_call>{"name": "a", "arguments": {}}</tool_call>\n'
              '<tool_call>{"name": "b", "arguments": {"x": 1}}</tool_call>')
    shown, calls = read_in_pieces("hermes", answer, 5)
    assert [c["function"]["name"] for c in calls] == ["a", "b"] and shown.strip() == ""


def test_a_conversation_with_tools_for_a_format_that_knows_only_text():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "c1", "content": '{"temp": 21}'},
    ]
    plain = tool_calls.plain_messages(messages, [WEATHER], "hermes")
    assert [m["role"] for m in plain] == ["system", "user", "assistant", "user"]
    assert plain[0]["content"].startswith("Be brief.\n\nYou can call these functions") and "get_weather" in plain[0]["content"]
    assert plain[2]["content"] == '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    assert plain[3]["content"] == '<tool_response>\n{"temp": 21}\n</tool_response>'
    assert all(set(m) == {"role", "content"} for m in plain)


def test_which_tools_a_call_must_be_and_its_schema():
    assert tool_calls.chosen_tools([WEATHER], "auto") is None
    assert tool_calls.chosen_tools([WEATHER], "required") == [WEATHER]
    assert tool_calls.chosen_tools([WEATHER], {"type": "function", "function": {"name": "get_weather"}}) == [WEATHER]
    with pytest.raises(XituiError, match="no tool named 'nope'"):
        tool_calls.chosen_tools([WEATHER], {"type": "function", "function": {"name": "nope"}})
    schema = tool_calls.call_schema([WEATHER], "llama3")
    assert schema["properties"]["name"] == {"const": "get_weather"} and "parameters" in schema["required"]


def test_the_forced_call_grammar_wraps_the_calls_json_in_the_formats_markers():
    call = 'root ::= "{" space "}"\nspace ::= " "?'
    grammar = tool_calls.call_grammar(call, "hermes", several=False)
    assert grammar.splitlines()[0] == 'root ::= "<tool_call>\\n" call "\\n</tool_call>"'
    assert 'call ::= "{" space "}"' in grammar and grammar.count("root ::=") == 1
    assert "[TOOL_CALLS][" in tool_calls.call_grammar(call, "mistral", several=True)


def test_the_format_comes_from_the_spec_then_the_template():
    assert tool_calls.detect(None, "qwen") == "hermes"
    assert tool_calls.detect("{{ '[TOOL_CALLS]' }}", None) == "mistral"
    assert tool_calls.detect("<|start_header_id|>{% if tools %}", None) == "llama3"
    assert tool_calls.detect("{% for m in messages %}", None) == "hermes"
    assert tool_calls.detect("{{ '<start_function_call>' }}", None) == "functiongemma"
    assert tool_calls.detect("{{ '<|tool_call>call:' }}", None) == "gemma"
    assert tool_calls.detect(None, "gemma") == "gemma"


def test_a_template_that_renders_tools_gets_the_arguments_as_objects():
    """Hugging Face's chat templates read a call's arguments as an object; OpenAI sends JSON text."""
    messages = [{"role": "assistant", "content": "", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"city": "Paris"}'}},
        {"id": "c2", "type": "function", "function": {"name": "g", "arguments": "not json"}}]}]
    calls = tool_calls.template_messages(messages)[0]["tool_calls"]
    assert calls[0]["function"]["arguments"] == {"city": "Paris"} and calls[1]["function"]["arguments"] == "not json"
    assert messages[0]["tool_calls"][0]["function"]["arguments"] == '{"city": "Paris"}'  # the request is untouched


@pytest.mark.parametrize("fmt", ["gemma", "functiongemma"])
def test_gemmas_call_syntax_round_trips_strings_that_look_like_structure(fmt):
    """Strings sit between escape tokens: quotes, backslashes, newlines, `a,b:c` and braces stay text."""
    args = {"city": 'Pa"r\\is,\nx:{y}', "days": 3, "ok": True, "none": None, "tags": ["a", "b,c"],
            "where": {"lat": 48.85, "name": "n:1"}}
    written = tool_calls.call_text({"function": {"name": "get_weather", "arguments": json.dumps(args)}}, fmt)
    assert '"' not in written.replace('<|"|>', "").replace('Pa"r', "")  # no JSON quotes: Gemma's own syntax
    shown, calls = read_in_pieces(fmt, "Looking." + written, 3)
    assert shown == "Looking." and json.loads(calls[0]["function"]["arguments"]) == args
    assert read_in_pieces(fmt, written.replace("call:", "cal "), 1000)[1] == []  # not a call: no call made


def test_gemmas_forced_call_grammar_holds_names_types_and_enums():
    tools = [WEATHER, {"type": "function", "function": {"name": "now", "parameters": {
        "type": "object", "properties": {"unit": {"enum": ["s", "ms"]}, "n": {"type": "array", "items": {
            "type": "integer"}, "minItems": 1, "maxItems": 2}}}}}]
    grammar = tool_calls.own_grammar(tool_calls.call_schema(tools, "functiongemma"), "functiongemma", several=False)
    lines = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert lines["root"].startswith('"<start_function_call>" ("call:get_weather" v') and '"call:now" v' in lines["root"]
    assert '"<escape>s<escape>" | "<escape>ms<escape>"' in lines.values()
    assert '"[" (int ("," int){0,1}) "]"' in lines.values()  # one or two: a counted repetition
    assert tool_calls.own_grammar(tool_calls.call_schema(tools, "hermes"), "hermes", several=False) is None


# --- calls a client cannot act on stay text -------------------------------------------------------------


@pytest.mark.parametrize("size", [1, 5, 100_000])
@pytest.mark.parametrize("arguments", ['{"x": NaN}', '{"x": Infinity}', '{"x": -Infinity}', '{"x": 1e999}',
                                       '"{\\"x\\": NaN}"', "[1, 2]", '"not json"'])
def test_arguments_that_are_not_a_json_object_leave_the_call_as_text(arguments, size):
    """Python's json reads NaN and Infinity and turns 1e999 into inf; a client's JSON parser reads none of
    them. The model's text is given as it was written, not as a call."""
    answer = f'Sure.<tool_call>{{"name": "get_weather", "arguments": {arguments}}}</tool_call> Done.'
    shown, calls = read_in_pieces("hermes", answer, size)
    assert calls == [] and shown == answer
    for fmt, text in (("mistral", f'[TOOL_CALLS][{{"name": "get_weather", "arguments": {arguments}}}]'),
                      ("llama3", f'{{"name": "get_weather", "parameters": {arguments}}}')):
        assert read_in_pieces(fmt, text, size) == (text, [])


@pytest.mark.parametrize("fmt", ["gemma", "functiongemma"])
def test_gemma_calls_with_numbers_json_cannot_hold_stay_text(fmt):
    start, end, _ = tool_calls.gemma_calls.TOKENS[fmt]
    for value in ("NaN", "Infinity", "1e999"):
        answer = f"{start}call:get_weather{{days:{value}}}{end}"
        shown, calls = read_in_pieces(fmt, answer, 4)
        assert calls == [] and shown == answer


def test_every_argument_given_is_json_any_parser_reads():
    answer = '<tool_call>{"name": "f", "arguments": {"big": 1e308, "small": -1e-300, "n": 12345678901234567890}}</tool_call>'
    _, calls = read_in_pieces("hermes", answer, 7)
    text = calls[0]["function"]["arguments"]
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in {text}"))
    assert json.loads(text) == {"big": 1e308, "small": -1e-300, "n": 12345678901234567890}


@pytest.mark.parametrize("size", [1, 9, 1_000_000])
def test_a_call_a_thousand_levels_deep_is_text_not_a_recursion_error(size):
    for fmt, answer in (
            ("hermes", '<tool_call>{"name": "f", "arguments": {"x": ' + "[" * 1000 + "]" * 1000 + "}}</tool_call>"),
            ("hermes", "<tool_call>" + "[" * 100_000 + "]" * 100_000 + "</tool_call>"),
            ("mistral", "[TOOL_CALLS]" + "[" * 5000 + "]" * 5000),
            ("llama3", '{"name": "f", "parameters": ' + '{"a": ' * 3000 + "1" + "}" * 3000 + "}"),
            ("gemma", "<|tool_call>call:f{x:" + "[" * 5000 + "]" * 5000 + "}<tool_call|>")):
        if size == 1 and len(answer) > 20_000:
            continue  # a character at a time: the reader is tested at every cut with the shorter ones
        assert read_in_pieces(fmt, answer, size) == (answer, [])
    # deep within the bound is still a call
    nested = "[" * 60 + "]" * 60
    _, calls = read_in_pieces("hermes", '<tool_call>{"name": "f", "arguments": {"x": ' + nested + "}}</tool_call>",
                              size)
    assert json.loads(calls[0]["function"]["arguments"]) == {"x": json.loads(nested)}


def test_the_depth_count_skips_brackets_in_strings_and_never_recurses():
    from xitui.core.chat_format import strict_json
    assert strict_json.depth('{"a": "[[[[\\"[[", "b": [{}]}') == 3
    assert strict_json.depth("[" * 1_000_000) == 1_000_000
    with pytest.raises(ValueError, match="deeper"):
        strict_json.loads("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("size", [1, 6, 1000])
def test_calls_to_functions_the_request_did_not_offer_stay_text(size):
    offered = frozenset({"get_weather"})

    def read(fmt: str, text: str) -> tuple[str, list[dict]]:
        reader = tool_calls.CallReader(fmt, offered=offered)
        shown, calls = "", []
        for i in range(0, len(text), size):
            part, found = reader.feed(text[i:i + size])
            shown, calls = shown + part, calls + found
        part, found = reader.finish()
        return shown + part, calls + found

    rogue = '<tool_call>{"name": "rm_rf", "arguments": {"path": "/"}}</tool_call>'
    good = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
    shown, calls = read("hermes", f"A {rogue} B {good} C")
    assert shown == f"A {rogue} B  C" and [c["function"]["name"] for c in calls] == ["get_weather"]
    # one rogue call in a list makes the whole list text: the client gets all the calls or none
    both = '[TOOL_CALLS][{"name": "get_weather", "arguments": {}}, {"name": "rm_rf", "arguments": {}}]'
    assert read("mistral", both) == (both, [])
    assert read("llama3", '{"name": "rm_rf", "parameters": {}}') == ('{"name": "rm_rf", "parameters": {}}', [])
    gemma = "<|tool_call>call:rm_rf{path:<|\"|>/<|\"|>}<tool_call|>"
    assert read("gemma", gemma) == (gemma, [])
    assert read("hermes", good)[1][0]["function"]["name"] == "get_weather"


def test_a_call_without_arguments_is_a_call_with_none():
    _, calls = read_in_pieces("hermes", '<tool_call>{"name": "now", "arguments": null}</tool_call>', 3)
    assert calls[0]["function"]["arguments"] == "{}"
    _, calls = read_in_pieces("hermes", '<tool_call>{"name": "now"}</tool_call>', 3)
    assert calls[0]["function"]["arguments"] == "{}"


def resolve(doc: dict, ref: str) -> object:
    """The node a local `$ref` points at in `doc` (RFC 6901 pointer)."""
    assert ref == "#" or ref.startswith("#/"), ref
    node: object = doc
    for token in ref[2:].split("/") if ref != "#" else []:
        token = token.replace("~1", "/").replace("~0", "~")
        node = node[int(token)] if isinstance(node, list) else node[token]  # type: ignore[index]
    return node


def refs_in(node: object) -> list[str]:
    if isinstance(node, list):
        return [r for item in node for r in refs_in(item)]
    if not isinstance(node, dict):
        return []
    return [v for k, v in node.items() if k == "$ref" and isinstance(v, str)] + \
        [r for k, v in node.items() if k not in ("enum", "const") for r in refs_in(v)]


def pydantic_tool(name: str) -> dict:
    """A tool whose parameters are pydantic's schema of a model with a nested model, an Enum, a range and a
    list of itself (what pydantic-ai's output tool and instructor's TOOLS mode send)."""
    from enum import Enum

    from pydantic import BaseModel, Field

    class Colour(str, Enum):
        red = "red"
        blue = "blue"

    class Address(BaseModel):
        city: str

    class Person(BaseModel):
        name: str
        age: int = Field(ge=0, le=150)
        colour: Colour
        home: Address
        friends: list[Person] = []

    return {"type": "function", "function": {"name": name, "parameters": Person.model_json_schema()}}


@pytest.mark.parametrize("fmt", ["hermes", "llama3"])
def test_a_tools_definitions_move_to_the_calls_root_and_every_reference_finds_its_own(fmt: str) -> None:
    """The parameters sit inside the call's schema: their `$defs` go to its root, and every reference resolves
    there to what it named before; two tools whose definitions share names each keep their own."""
    other = {"type": "function", "function": {"name": "ship", "parameters": {
        "$defs": {"Address": {"type": "object", "properties": {"port": {"type": "string"}}}},
        "definitions": {"Address": {"type": "integer"}},
        "type": "object", "properties": {
            "to": {"$ref": "#/$defs/Address"}, "dock": {"$ref": "#/definitions/Address"},
            "again": {"$ref": "#"}, "same": {"$ref": "#/properties/to"},
            "mark": {"const": {"$ref": "#/$defs/Address"}}}}}}
    tools = [pydantic_tool("person"), other]
    schema = tool_calls.call_schema(tools, fmt)
    key = "parameters" if fmt == "llama3" else "arguments"
    assert all(not {"$defs", "definitions"} & set(option["properties"][key]) for option in schema["anyOf"])
    for ref in refs_in(schema):
        resolve(schema, ref)  # (raises where a reference points at nothing)
    person, ship = (option["properties"][key] for option in schema["anyOf"])
    target = resolve(schema, person["$ref"])
    assert target["title"] == "Person" and resolve(schema, target["properties"]["colour"]["$ref"])["enum"] == [
        "red", "blue"]
    assert resolve(schema, target["properties"]["friends"]["items"]["$ref"]) is target
    props = ship["properties"]
    assert resolve(schema, props["to"]["$ref"]) == {"type": "object", "properties": {"port": {"type": "string"}}}
    assert resolve(schema, props["dock"]["$ref"]) == {"type": "integer"}
    assert resolve(schema, props["again"]["$ref"]) is ship
    assert resolve(schema, props["same"]["$ref"]) is props["to"]
    assert props["mark"] == {"const": {"$ref": "#/$defs/Address"}}  # a value, not a reference: as sent
    one = tool_calls.call_schema([pydantic_tool("person")], fmt)  # one tool: no anyOf, the same moves
    assert resolve(one, one["properties"][key]["$ref"])["title"] == "Person"


def test_gemmas_forced_call_follows_definitions_and_refuses_what_it_cannot_hold() -> None:
    from xitui.core.chat_format import gemma_calls

    def grammar(parameters: dict) -> str:
        tools = [{"type": "function", "function": {"name": "f", "parameters": parameters}}]
        return gemma_calls.call_grammar(tool_calls.call_schema(tools, "gemma"), "gemma", False)

    nested = {"$defs": {"Colour": {"enum": ["red", "blue"]}, "Node": {
        "type": "object", "properties": {"next": {"$ref": "#/$defs/Node"}, "colour": {"$ref": "#/$defs/Colour"}}}},
        "type": "object", "properties": {"head": {"$ref": "#/$defs/Node"}}, "required": ["head"]}
    written = grammar(nested)
    assert '"<|\\"|>red<|\\"|>" | "<|\\"|>blue<|\\"|>"' in written and '"next:" d0' in written
    for parameters, says in [
        ({"type": "object", "properties": {"age": {"type": "integer", "minimum": 0}}}, "'minimum' cannot be held"),
        ({"$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}, "type": "object",
          "properties": {"x": {"$ref": "#/$defs/A"}}}, "only a reference to itself"),
        ({"type": "object", "properties": {"x": {"$ref": "#/properties/y"}, "y": {"type": "string"}}},
         "(a reference to one of the parameters' $defs can)"),
        ({"type": "object", "properties": {"x": {"$ref": "#/$defs/missing"}}}, "cannot be held to"),
        # (found by attacking it: each of these was a 200 whose call broke the schema or was not read as one)
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/S", "enum": ["only"]}}, "required": ["a"],
          "$defs": {"S": {"type": "string"}}}, "'enum' beside a '$ref' cannot be held to"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/X"}}, "$defs": {"X": False}},
         "a false schema"),
        ({"type": "object", "properties": {"$ref": {"const": "x"}}}, "the property name '$ref' cannot be written"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {
            "A": {"anyOf": [{"$ref": "#/$defs/B"}]}, "B": {"$ref": "#/$defs/A"}}}, "only a reference to itself"),
    ]:
        with pytest.raises(ValueError, match=re.escape(says)):
            grammar(parameters)
