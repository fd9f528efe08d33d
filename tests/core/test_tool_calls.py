"""Tool calls as text: reading them out of an answer however it is cut into pieces, the conversation for a
chat format without tools, and the grammar of a forced call."""

from __future__ import annotations

import json

import pytest

from xitui.core import tool_calls
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
    assert '"[" (int | int "," int) "]"' in lines.values()
    assert tool_calls.own_grammar(tool_calls.call_schema(tools, "hermes"), "hermes", several=False) is None
