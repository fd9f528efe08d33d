"""Anthropic's Messages API through a real server and its worker, with a scripted model: the anthropic SDK's
create and stream, a tool_use -> tool_result round trip, and what cannot be read is one line. Real models
doing the same: test_messages.py (slow)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import servers
from tests.support.models import launched
from tests.support.specs import scripted_spec
from xitui.client import Client

anthropic = pytest.importorskip("anthropic")


def call(name: str, **arguments: Any) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


RULES = [
    {"match": "tell a story", "reply": ["Once", " upon", " a", " time"], "repeat": 1000, "delay": 0.01},
    {"match": "21 degrees", "reply": "It is 21 degrees in Paris."},
    {"match": "add two and two", "reply": "<think>Two and two make four.</think>It is 4."},
    {"match": "count to five", "reply": ["one", " two", " three", " four", " five"]},
    {"match": "both cities", "constraint": "tool_call",
     "reply": call("get_weather", city="Paris") + "\n" + call("get_weather", city="Lyon")},
    {"match": "weather", "constraint": "tool_call", "reply": call("get_weather", city="Paris")},
    {"match": "weather", "reply": call("get_weather", city="Lyon")},
    {"match": "Be brief.", "reply": "Red, green, blue."},
    {"reply": "Hello there, friend."},
]
TOOLS = [{"name": "get_weather", "description": "The weather in a city", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def teller(scripted: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = scripted_spec("teller", tmp_path_factory.mktemp("teller"), RULES, abilities=["chat", "tools", "reasoning"])
    with launched(Client(scripted.url), "teller", spec, model_engine="scripted") as uid:
        yield uid


def sdk(server: servers.ServerProcess) -> Any:
    return anthropic.Anthropic(base_url=server.url, api_key="none", max_retries=0)


def test_a_message_whole_and_streamed(scripted, teller):
    client = sdk(scripted)
    done = client.messages.create(model=teller, max_tokens=50, system="Be brief.",
                                  messages=[{"role": "user", "content": "Name three colours."}])
    assert [b.type for b in done.content] == ["text"] and done.content[0].text == "Red, green, blue."
    assert done.stop_reason == "end_turn" and done.usage.output_tokens > 0 and done.usage.input_tokens > 0
    hello = [{"role": "user", "content": "hi"}]
    with client.messages.stream(model=teller, max_tokens=50, messages=hello) as stream:
        events = list(stream)
        final = stream.get_final_message()
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta" and e.delta.type == "text_delta")
    assert text == "Hello there, friend." and final.stop_reason == "end_turn"
    # message_start names the prompt's tokens (Claude Code reads them there), as count_tokens and the end do
    started = next(e for e in events if e.type == "message_start").message.usage
    assert started.input_tokens == final.usage.input_tokens > 0 and started.output_tokens == 0
    assert started.input_tokens == client.messages.count_tokens(model=teller, messages=hello).input_tokens


def test_a_tool_use_then_its_result_then_the_answer(scripted, teller):
    client = sdk(scripted)
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    forced = client.messages.create(model=teller, max_tokens=80, tools=TOOLS, messages=question,
                                    tool_choice={"type": "tool", "name": "get_weather"})
    (use,) = [b for b in forced.content if b.type == "tool_use"]
    assert forced.stop_reason == "tool_use" and (use.name, use.input) == ("get_weather", {"city": "Paris"})
    with client.messages.stream(model=teller, max_tokens=80, tools=TOOLS, messages=question) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use" and [b.input for b in final.content if b.type == "tool_use"] == [
        {"city": "Lyon"}]  # left to itself, this model calls with another city
    answer = client.messages.create(model=teller, max_tokens=80, tools=TOOLS, messages=[
        *question, {"role": "assistant", "content": forced.content},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "21 degrees"}]}])
    assert answer.content[0].text == "It is 21 degrees in Paris." and answer.stop_reason == "end_turn"


@pytest.mark.parametrize(("body", "says"), [
    ({"messages": [{"role": "user", "content": [{"type": "document", "source": {}}]}]},
     "messages[0].content[0]: 'document' blocks are not read in a user turn"),
    ({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "any"}}, "tool_choice: 'any' needs tools"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "web_search_20250305", "name": "web"}]},
     "tools[0]: Anthropic's server tools"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
])
def test_what_cannot_be_read_is_one_line(scripted, teller, body, says):
    response = httpx.post(f"{scripted.url}/v1/messages", timeout=30,
                          json={"model": teller, "max_tokens": 10, **body})
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"] and "\n" not in response.json()["detail"]


def test_a_thinking_models_reasoning_is_a_thinking_block_whole_and_streamed(scripted, teller):
    client = sdk(scripted)
    asked = {"model": teller, "max_tokens": 50, "messages": [{"role": "user", "content": "add two and two"}]}
    done = client.messages.create(**asked)
    assert [(b.type, getattr(b, "thinking", None) or getattr(b, "text", None)) for b in done.content] == [
        ("thinking", "Two and two make four."), ("text", "It is 4.")]
    with client.messages.stream(**asked) as stream:
        kinds = [event.delta.type for event in stream if event.type == "content_block_delta"]
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"] and final.content[1].text == "It is 4."
    assert "thinking_delta" in kinds and "signature_delta" in kinds and "text_delta" in kinds
    # told not to think (Claude Code sends "adaptive" to every model; "disabled" turns it off where it can)
    quiet = client.messages.create(**asked, thinking={"type": "disabled"})
    assert quiet.content[-1].text == "It is 4."


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_several_calls_at_once_are_tool_use_blocks_and_nothing_else(scripted, teller, streamed):
    client = sdk(scripted)
    asked = {"model": teller, "max_tokens": 200, "tools": TOOLS, "tool_choice": {"type": "any"},
             "messages": [{"role": "user", "content": "The weather in both cities?"}]}
    if streamed:
        with client.messages.stream(**asked) as stream:
            done = stream.get_final_message()
    else:
        done = client.messages.create(**asked)
    assert [(b.type, b.input) for b in done.content] == [("tool_use", {"city": "Paris"}), ("tool_use", {"city": "Lyon"})]
    assert all(b.id.startswith("toolu_") for b in done.content) and len({b.id for b in done.content}) == 2
    assert done.stop_reason == "tool_use"


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_a_stop_sequence_met_is_named(scripted, teller, streamed):
    client = sdk(scripted)
    asked = {"model": teller, "max_tokens": 50, "stop_sequences": ["four", "zzz"],
             "messages": [{"role": "user", "content": "count to five"}]}
    if streamed:
        with client.messages.stream(**asked) as stream:
            done = stream.get_final_message()
    else:
        done = client.messages.create(**asked)
    assert done.content[0].text == "one two three " and (done.stop_reason, done.stop_sequence) == (
        "stop_sequence", "four")
    ended = client.messages.create(model=teller, max_tokens=50, messages=asked["messages"])  # its own end
    assert (ended.stop_reason, ended.stop_sequence) == ("end_turn", None)
    cut = client.messages.create(model=teller, max_tokens=2, messages=asked["messages"])
    assert (cut.stop_reason, cut.content[0].text) == ("max_tokens", "one two")


def test_count_tokens_is_what_the_answer_says_it_read(scripted, teller):
    client = sdk(scripted)
    question = [{"role": "user", "content": "What is the weather in Paris?"}]
    counted = client.messages.count_tokens(model=teller, messages=question, system="Be brief.")
    read = client.messages.create(model=teller, max_tokens=20, messages=question, system="Be brief.")
    assert counted.input_tokens == read.usage.input_tokens > 0
    with_tools = client.messages.count_tokens(model=teller, messages=question, tools=TOOLS)
    assert with_tools.input_tokens > client.messages.count_tokens(model=teller, messages=question).input_tokens
    with pytest.raises(anthropic.NotFoundError):
        client.messages.count_tokens(model="nobody", messages=question)


def test_what_claude_code_sends_is_taken(scripted, teller):
    """The fields Claude Code 2.1 sends (../shared/XINFERENCE_API.md) change nothing a local model writes."""
    response = httpx.post(f"{scripted.url}/v1/messages?beta=true", timeout=30, headers={
        "anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219", "x-api-key": "any"}, json={
        "model": teller, "max_tokens": 32000, "stream": True, "thinking": {"type": "adaptive"},
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
        "output_config": {"effort": "high"}, "metadata": {"user_id": "u"},
        "system": [{"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi",
                                                    "cache_control": {"type": "ephemeral"}}]}]})
    assert response.status_code == 200, response.text
    events = [json.loads(line[6:]) for line in response.text.splitlines() if line.startswith("data: ")]
    assert "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta") == (
        "Hello there, friend.")
    assert events[-1] == {"type": "message_stop"}


def test_errors_are_anthropics_envelope(scripted, teller):
    client = sdk(scripted)
    with pytest.raises(anthropic.NotFoundError) as missing:
        client.messages.create(model="nobody", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert missing.value.body["type"] == "error" and missing.value.body["error"]["type"] == "not_found_error"
    with pytest.raises(anthropic.BadRequestError) as bad:
        client.messages.create(model=teller, max_tokens=0, messages=[{"role": "user", "content": "x"}])
    assert "max_tokens" in bad.value.body["error"]["message"]


def test_a_system_turn_amid_the_conversation_joins_the_system_prompt(scripted, tmp_path):
    """Claude Code 2.1 sends a system turn after the user's first (its "mid-conversation-system" beta): every
    chat template takes the system prompt first, so the turn's text is read there, after the system field's."""
    spec = scripted_spec("echo", tmp_path / "echo", [{"echo": "prompt"}])
    with launched(Client(scripted.url), "echo", spec, model_engine="scripted") as uid:
        done = sdk(scripted).messages.create(model=uid, max_tokens=200, system="First.", messages=[
            {"role": "user", "content": [{"type": "text", "text": "<reminder>"}, {"type": "text", "text": "hi"}]},
            {"role": "system", "content": "Second."}])
    assert json.loads(done.content[0].text).startswith(
        "<|im_start|>system\nFirst.\n\nSecond.<|im_end|>\n<|im_start|>user\n<reminder>\nhi<|im_end|>")


def nest(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


@pytest.mark.parametrize(("path", "extra", "says"), [
    ("/v1/messages", {"tools": [{"name": "t", "input_schema": nest(300)}]}, "tools[0].input_schema: nested deeper"),
    ("/v1/messages/count_tokens", {"tools": [{"name": "t", "input_schema": nest(300)}]},
     "tools[0].input_schema: nested deeper"),
    ("/v1/messages", {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "t", "input": "DEEP"}]}]}, "content[0].input: nested deeper"),
    ("/v1/messages", {"tools": [{"name": "t"}, {"name": "t"}]}, "tools[1].name: two tools are named 't'"),
    ("/v1/messages", {"system": [{"type": "image", "source": {}}]}, "system[0]: a system prompt's 'image' blocks"),
    ("/v1/messages", {"output_format": {"type": "text"}}, 'output_format: served as {"type": "json_schema"'),
    ("/v1/messages", {"output_config": {"format": {"type": "json_schema", "schema": "x"}}},
     "output_config.format: served as"),
    ("/v1/messages", {"output_format": {"type": "json_schema", "schema": nest(300)}}, "nested deeper"),
])
def test_hostile_bodies_are_one_line_400s(scripted, teller, path, extra, says):
    """Found by attacking the API: nesting between what the body reader allows (1024) and what the request
    handed on may hold (64) was a 500 with a traceback."""
    body = {"model": teller, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}], **extra}
    # (990 levels: more than Python's json writes; the body is put together as text)
    text = json.dumps(body).replace('"DEEP"', '{"a":' * 990 + "1" + "}" * 990)
    response = httpx.post(f"{scripted.url}{path}", timeout=30, content=text,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"] and response.json()["type"] == "error"


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses"])
def test_a_client_that_hangs_up_before_its_whole_answer_holds_no_slot(scripted, teller, path):
    """Found by attacking the API: an answer that did not stream ran on after its client left, and six of
    them made another client's 10 tokens wait 40 s."""
    body = ({"model": teller, "max_tokens": 4000, "messages": [{"role": "user", "content": "tell a story"}]}
            if path == "/v1/messages" else {"model": teller, "max_output_tokens": 4000, "input": "tell a story"})
    for _ in range(3):
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{scripted.url}{path}", timeout=0.5, json=body)
    client = Client(scripted.url)
    deadline = time.monotonic() + 10
    while client.describe_model(teller)["metrics"]["in_flight"]:
        assert time.monotonic() < deadline, "the abandoned answers were still being written"
        time.sleep(0.1)


@pytest.mark.parametrize("field", ["metadata", "thinking", "context_management", "output_config"])
def test_a_deep_field_that_is_left_is_no_500(scripted, teller, field):
    """Fields read only at their top (or not at all) may still be nested deep: a clear 400 or an answer."""
    body = {"model": teller, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], field: nest(300)}
    response = httpx.post(f"{scripted.url}/v1/messages", timeout=30, json=body)
    assert response.status_code in (200, 400), response.text
