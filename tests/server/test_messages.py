"""Anthropic's Messages API on real weights (the bundled SmolLM2 GGUF) through the anthropic SDK: an answer
whole and streamed is the same greedy text, a forced tool_use follows the tool's schema and its tool_result is
answered, several calls at once are tool_use blocks only, and a stream's events are in Anthropic's order."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.conftest import ServerProcess
from xitui.client import Client

anthropic = pytest.importorskip("anthropic")

MODEL = "demo-smollm2-135m"
WEATHER = {"name": "get_weather", "description": "The weather in a city", "input_schema": {
    "type": "object", "additionalProperties": False, "required": ["city", "unit"], "properties": {
        "city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}}}}
TIME = {"name": "get_time", "input_schema": {
    "type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}}, "required": ["zone"]}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
#: (the anthropic SDK 2.x takes no temperature argument: Claude's newest models fix it; the API still reads it)
GREEDY = {"temperature": 0}


@pytest.fixture(scope="module")
def uid(server: ServerProcess) -> Iterator[str]:
    client = Client(server.url)
    name = client.launch_model(model_name=MODEL, model_uid="messages")
    yield name
    client.terminate_model(name)


def sdk(server: ServerProcess) -> Any:
    return anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0)


def test_an_answer_whole_and_streamed_is_the_same_greedy_text(server, uid):
    client = sdk(server)
    asked = {"model": uid, "max_tokens": 24, "extra_body": GREEDY, "system": "You are a helpful assistant.",
             "messages": [{"role": "user", "content": "Name three colours."}]}
    whole = client.messages.create(**asked)
    assert [b.type for b in whole.content] == ["text"] and whole.content[0].text.strip()
    assert whole.stop_reason in ("end_turn", "max_tokens") and whole.id.startswith("msg_")
    assert whole.usage.input_tokens > 10 and 0 < whole.usage.output_tokens <= 24
    with client.messages.stream(**asked) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text and final.usage.output_tokens == whole.usage.output_tokens
    # the same answer through chat completions: one model, two APIs
    chat = httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
        "model": uid, "max_tokens": 24, "temperature": 0, "messages": [
            {"role": "system", "content": "You are a helpful assistant."}, *asked["messages"]]}).json()
    assert chat["choices"][0]["message"]["content"] == text


def test_a_stream_is_anthropics_events_in_their_order(server, uid):
    with httpx.stream("POST", f"{server.url}/v1/messages", timeout=120, json={
            "model": uid, "max_tokens": 8, "temperature": 0, "stream": True, "messages": QUESTION}) as reply:
        lines = list(reply.iter_lines())
    events = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    assert events[0] == "message_start" and events[1] == "content_block_start"
    assert set(events[2:-3]) == {"content_block_delta"}
    assert events[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    data = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    # the prompt's tokens, known before the first piece, and the same at the end
    assert data[0]["message"]["usage"]["input_tokens"] == data[-2]["usage"]["input_tokens"] > 10


def test_a_forced_tool_use_follows_its_schema_and_its_result_is_answered(server, uid):
    client = sdk(server)
    forced = client.messages.create(model=uid, max_tokens=120, extra_body=GREEDY, tools=[WEATHER, TIME],
                                    tool_choice={"type": "tool", "name": "get_weather"}, messages=QUESTION)
    assert forced.stop_reason == "tool_use" and [b.type for b in forced.content] == ["tool_use"]
    use = forced.content[0]
    assert use.id.startswith("toolu_") and use.name == "get_weather"
    assert set(use.input) == {"city", "unit"} and use.input["unit"] in ("celsius", "fahrenheit")
    answer = client.messages.create(model=uid, max_tokens=40, extra_body=GREEDY, tools=[WEATHER, TIME], messages=[
        *QUESTION, {"role": "assistant", "content": forced.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                      "content": [{"type": "text", "text": "21 degrees and sunny"}]}]}])
    assert answer.stop_reason in ("end_turn", "max_tokens") and answer.content[0].type == "text"
    assert answer.content[0].text.strip()


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_any_tool_calls_are_tool_use_blocks_only(server, uid, streamed):
    client = sdk(server)
    asked = {"model": uid, "max_tokens": 200, "extra_body": GREEDY, "tools": [WEATHER, TIME],
             "tool_choice": {"type": "any"},
             "messages": [{"role": "user", "content": "The weather in Paris and the time in Tokyo, please."}]}
    if streamed:
        with client.messages.stream(**asked) as stream:
            done = stream.get_final_message()
    else:
        done = client.messages.create(**asked)
    assert done.stop_reason == "tool_use" and done.content
    assert all(b.type == "tool_use" for b in done.content), [b.type for b in done.content]
    for block in done.content:
        assert block.name in ("get_weather", "get_time") and isinstance(block.input, dict)
        json.dumps(block.input)


def test_calls_cut_by_max_tokens_say_so(server, uid):
    """Several calls allowed, the answer cut inside the second: the stop reason is max_tokens (the client
    must know its answer is not whole), not tool_use; the calls made before the cut are given."""
    client = sdk(server)
    whole = client.messages.create(model=uid, max_tokens=200, extra_body=GREEDY, tools=[WEATHER, TIME],
                                   tool_choice={"type": "any"}, messages=QUESTION)
    assert whole.stop_reason == "tool_use"
    cut = client.messages.create(model=uid, max_tokens=whole.usage.output_tokens - 2, extra_body=GREEDY,
                                 tools=[WEATHER, TIME], tool_choice={"type": "any"}, messages=QUESTION)
    assert cut.stop_reason == "max_tokens" and "tool_use" in [b.type for b in cut.content]
    chat = httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
        "model": uid, "max_tokens": whole.usage.output_tokens - 2, "temperature": 0, "messages": QUESTION,
        "tool_choice": "required", "parallel_tool_calls": True,
        "tools": [{"type": "function", "function": {"name": t["name"], "parameters": t["input_schema"]}}
                  for t in (WEATHER, TIME)]}).json()
    assert chat["choices"][0]["finish_reason"] == "length"


@pytest.mark.parametrize("key", ["output_format", "output_config"])
def test_an_output_format_holds_the_answer_to_its_schema(server, uid, key):
    """Anthropic's structured output (`output_format`, its beta, or `output_config.format`): the text block is
    JSON of the schema (it was left unread: free text, end_turn)."""
    schema = {"type": "object", "additionalProperties": False, "required": ["city", "country"], "properties": {
        "city": {"type": "string", "maxLength": 40}, "country": {"type": "string", "maxLength": 40}}}
    form = {"type": "json_schema", "schema": schema}
    done = httpx.post(f"{server.url}/v1/messages", timeout=120, json={
        "model": uid, "max_tokens": 100, "temperature": 0, "messages": [
            {"role": "user", "content": "Where is the Eiffel tower?"}],
        key: form if key == "output_format" else {"format": form, "effort": "high"}}).json()
    assert done["stop_reason"] == "end_turn" and set(json.loads(done["content"][0]["text"])) == {"city", "country"}
