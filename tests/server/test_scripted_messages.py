"""Anthropic's Messages API through a real server and its worker, with a scripted model: the anthropic SDK's
create and stream, a tool_use -> tool_result round trip, and what cannot be read is one line. Real models
doing the same: (next step) test_messages.py (slow)."""

from __future__ import annotations

import json
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
    {"match": "21 degrees", "reply": "It is 21 degrees in Paris."},
    {"match": "weather", "constraint": "tool_call", "reply": call("get_weather", city="Paris")},
    {"match": "weather", "reply": call("get_weather", city="Lyon")},
    {"match": "Be brief.", "reply": "Red, green, blue."},
    {"reply": "Hello there, friend."},
]
TOOLS = [{"name": "get_weather", "description": "The weather in a city", "input_schema": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def teller(scripted: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = scripted_spec("teller", tmp_path_factory.mktemp("teller"), RULES, abilities=["chat", "tools"])
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
    with client.messages.stream(model=teller, max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello there, friend." and final.stop_reason == "end_turn"


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
    ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
])
def test_what_cannot_be_read_is_one_line(scripted, teller, body, says):
    response = httpx.post(f"{scripted.url}/v1/messages", timeout=30,
                          json={"model": teller, "max_tokens": 10, **body})
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"] and "\n" not in response.json()["detail"]
