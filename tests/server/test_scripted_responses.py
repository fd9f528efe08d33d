"""OpenAI's Responses API through a real server and its worker, with a scripted model: the openai SDK's
responses.create and .stream, a function call -> function_call_output round trip, reasoning items, a
json_schema format, what Codex sends, and what cannot be read is one line. Real models doing the same:
test_responses.py (slow)."""

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

openai = pytest.importorskip("openai")


def nest(depth: int, leaf: Any = 1) -> Any:
    for _ in range(depth):
        leaf = {"a": leaf}
    return leaf


NEST = nest(300)


def call(name: str, **arguments: Any) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


RULES = [
    {"match": "21 degrees", "reply": "It is 21 degrees in Paris."},
    {"match": "add two and two", "reply": "<think>Two and two make four.</think>It is 4."},
    {"match": "count to five", "reply": ["one", " two", " three", " four", " five"]},
    {"match": "both cities", "constraint": "tool_call",
     "reply": call("get_weather", city="Paris") + "\n" + call("get_weather", city="Lyon")},
    {"match": "weather", "constraint": "tool_call", "reply": call("get_weather", city="Paris")},
    {"match": "weather", "reply": call("get_weather", city="Lyon")},
    {"match": "a city as JSON", "reply": '{"city": "Paris", "country": "France"}'},
    {"match": "Be brief.", "reply": "Red, green, blue."},
    {"reply": "Hello there, friend."},
]
TOOLS = [{"type": "function", "name": "get_weather", "description": "The weather in a city", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}]


@pytest.fixture(scope="module")
def teller(scripted: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = scripted_spec("teller", tmp_path_factory.mktemp("teller"), RULES, abilities=["chat", "tools", "reasoning"])
    with launched(Client(scripted.url), "teller", spec, model_engine="scripted") as uid:
        yield uid


def sdk(server: servers.ServerProcess) -> Any:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


def test_a_response_whole_and_streamed(scripted, teller):
    client = sdk(scripted)
    done = client.responses.create(model=teller, instructions="Be brief.", input="Name three colours.")
    assert done.status == "completed" and done.output_text == "Red, green, blue."
    assert [item.type for item in done.output] == ["message"] and done.id.startswith("resp_")
    assert done.usage.input_tokens > 0 and done.usage.output_tokens > 0
    with client.responses.stream(model=teller, input=[{"role": "user", "content": "hi"}]) as stream:
        deltas = [event.delta for event in stream if event.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == "Hello there, friend." and final.status == "completed"


def test_a_function_call_then_its_output_then_the_answer(scripted, teller):
    client = sdk(scripted)
    question = [{"role": "user", "content": [{"type": "input_text", "text": "What is the weather in Paris?"}]}]
    forced = client.responses.create(model=teller, input=question, tools=TOOLS,
                                     tool_choice={"type": "function", "name": "get_weather"})
    (called,) = [item for item in forced.output if item.type == "function_call"]
    assert (called.name, json.loads(called.arguments)) == ("get_weather", {"city": "Paris"})
    with client.responses.stream(model=teller, input=question, tools=TOOLS) as stream:
        final = stream.get_final_response()
    assert [json.loads(i.arguments) for i in final.output if i.type == "function_call"] == [{"city": "Lyon"}]
    answer = client.responses.create(model=teller, tools=TOOLS, input=[
        *question, {"type": "function_call", "call_id": called.call_id, "name": called.name,
                    "arguments": called.arguments},
        {"type": "function_call_output", "call_id": called.call_id, "output": "21 degrees"}])
    assert answer.output_text == "It is 21 degrees in Paris."


@pytest.mark.parametrize("streamed", [False, True], ids=["whole", "streamed"])
def test_several_calls_at_once_are_function_calls_and_nothing_else(scripted, teller, streamed):
    client = sdk(scripted)
    asked = {"model": teller, "tools": TOOLS, "tool_choice": "required", "input": "The weather in both cities?"}
    if streamed:
        with client.responses.stream(**asked) as stream:
            done = stream.get_final_response()
    else:
        done = client.responses.create(**asked)
    assert [(i.type, json.loads(i.arguments)) for i in done.output] == [
        ("function_call", {"city": "Paris"}), ("function_call", {"city": "Lyon"})]
    assert len({i.call_id for i in done.output}) == 2


def test_reasoning_is_its_own_item_whole_and_streamed(scripted, teller):
    client = sdk(scripted)
    done = client.responses.create(model=teller, input="add two and two")
    assert [item.type for item in done.output] == ["reasoning", "message"] and done.output_text == "It is 4."
    assert done.output[0].content[0].text == "Two and two make four."
    with client.responses.stream(model=teller, input="add two and two") as stream:
        kinds = [event.type for event in stream]
    assert "response.reasoning_text.delta" in kinds and "response.output_text.delta" in kinds
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


def test_a_json_schema_format_and_a_cut_answer(scripted, teller):
    client = sdk(scripted)
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
              "required": ["city", "country"], "additionalProperties": False}
    done = client.responses.create(model=teller, input="a city as JSON", text={"format": {
        "type": "json_schema", "name": "place", "schema": schema, "strict": True}})
    assert json.loads(done.output_text) == {"city": "Paris", "country": "France"}
    cut = client.responses.create(model=teller, input="count to five", max_output_tokens=2)
    assert cut.status == "incomplete" and cut.incomplete_details.reason == "max_output_tokens"
    assert cut.output_text == "one two"
    assert [item.status for item in cut.output] == ["incomplete"]  # (the item cut, as its response is)


def test_what_codex_sends_is_taken(scripted, teller):
    """The fields Codex 0.171 sends (../shared/XINFERENCE_API.md) change nothing a local model writes."""
    with httpx.stream("POST", f"{scripted.url}/v1/responses", timeout=30, json={
            "model": teller, "instructions": "You are Codex.", "stream": True, "store": False,
            "tools": [{"type": "function", "name": "shell", "description": "Runs a command", "strict": False,
                       "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {
                           "type": "string"}}}, "required": ["command"]}},
                      {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents", "tools": [
                          {"type": "function", "name": "spawn_agent", "strict": False, "parameters": {
                              "type": "object", "properties": {"task": {"type": "string"}}}}]},
                      {"type": "web_search", "external_web_access": False}],
            "tool_choice": "auto", "parallel_tool_calls": False,
            "reasoning": {"effort": "medium", "summary": "auto"}, "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "k", "client_metadata": {"x": "y"},
            "input": [{"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "dev"}]},
                      {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
                      {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"}]}) as reply:
        assert reply.status_code == 200, reply.read()
        events = [json.loads(line[6:]) for line in reply.iter_lines() if line.startswith("data: ")]
    assert "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta") == "Hello there, friend."
    assert events[-1]["type"] == "response.completed"
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


@pytest.mark.parametrize(("body", "says"), [
    ({"input": "x", "previous_response_id": "resp_1"}, "previous_response_id: responses are not kept here"),
    ({"input": "x", "store": True}, "store: responses are not kept here"),
    ({"input": [{"type": "computer_call_output", "call_id": "c"}]}, "input[0]: 'computer_call_output' items"),
    ({"input": [{"type": "function_call_output"}]}, "input[0]: a function_call_output has the call_id"),
    # found by attacking the API: each of these was a 500 with a traceback, or a wrong word
    ({"input": "x", "tools": [{"type": "function", "name": "t", "parameters": NEST}]}, "tools[0].parameters: nested"),
    ({"input": "x", "tools": [{"type": "namespace", "name": "n", "tools": [
        {"type": "function", "name": "t", "parameters": NEST}]}]}, "tools[0].tools[0].parameters: nested"),
    ({"input": "x", "text": {"format": {"type": "json_schema", "name": "n", "schema": NEST}}},
     "text.format.schema: nested"),
    ({"input": "x", "metadata": {"x": "A" * 100_000}}, "metadata: at most 16 pairs"),
    ({"input": []}, "input: a text, or a list of at least one item"),
    ({"input": "x", "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "namespace", "name": "m"}]}]},
     "tools[0].tools[0]: a namespace holds functions, not 'namespace'"),
    ({"input": "x", "tools": [{"type": "namespace", "name": "n", "tools": [{"type": "function", "name": "t"}]},
                              {"type": "function", "name": "t"}]}, "two functions are named 't'"),
    ({"input": "x", "tools": [{"type": "namespace", "name": f"n{k}", "tools": [
        {"type": "function", "name": f"t{k}_{i}"} for i in range(100)]} for k in range(2)]},
     "tools: 200 functions, namespaces' included; at most 128"),
    ({"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
])
def test_what_cannot_be_read_is_one_line(scripted, teller, body, says):
    response = httpx.post(f"{scripted.url}/v1/responses", timeout=30, json={"model": teller, **body})
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert says in detail and "\n" not in detail and response.json()["error"]["message"] == detail


def test_a_function_of_a_namespace_is_called_with_its_namespace(scripted, tmp_path):
    rules = [{"match": "spawn", "constraint": "tool_call", "reply": call("spawn_agent", task="tests")}]
    spec = scripted_spec("spawner", tmp_path / "spawner", rules, abilities=["chat", "tools"])
    with launched(Client(scripted.url), "spawner", spec, model_engine="scripted") as uid:
        done = sdk(scripted).responses.create(model=uid, input="spawn one", tool_choice="required", tools=[
            {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents", "tools": [
                {"type": "function", "name": "spawn_agent", "parameters": {
                    "type": "object", "properties": {"task": {"type": "string"}}, "required": ["task"]}}]},
            {"type": "web_search"}])
    (item,) = done.output
    assert (item.type, item.name, json.loads(item.arguments)) == ("function_call", "spawn_agent", {"task": "tests"})
    assert item.namespace == "multi_agent_v1"
