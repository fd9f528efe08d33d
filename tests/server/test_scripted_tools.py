"""Tool calls through a real server and its worker, written by a scripted model in hermes' <tool_call> syntax: the
worker takes them out of the answer, the server gives them in OpenAI's fields, whole and streamed, and what cannot
be served is one line. Real models doing the same: test_tools.py (slow)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import servers
from tests.support.models import launched
from tests.support.specs import scripted_spec
from xitui.client import Client

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city"], "properties": {
        "city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]}}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


def call(name: str, **arguments: Any) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


RULES = [
    # the follow-up: the tool's answer is in the conversation
    {"match": "21 degrees", "reply": "It is 21 degrees in Paris."},
    # a forced call (the worker got the call's form as its constraint): Paris, as asked
    {"match": "weather", "constraint": "tool_call", "reply": call("get_weather", city="Paris", unit="celsius")},
    {"match": "and the time", "reply": call("get_weather", city="Paris") + "\n" + call("get_time", zone="CET")},
    {"match": "rockets", "reply": call("launch_rockets", count=3)},
    # left to itself, this model calls with another city (so a forced call's answer shows it was forced)
    {"match": "weather", "reply": call("get_weather", city="Lyon")},
    {"reply": "Nothing to call."},
]


@pytest.fixture(scope="module")
def caller(scripted: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = scripted_spec("caller", tmp_path_factory.mktemp("caller"), RULES, abilities=["chat", "tools"])
    with launched(Client(scripted.url), "caller", spec, model_engine="scripted") as uid:
        yield uid


def sdk(server: servers.ServerProcess) -> Any:
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


def test_a_call_the_model_makes_comes_in_openais_fields(scripted, caller):
    done = sdk(scripted).chat.completions.create(model=caller, messages=QUESTION, tools=[WEATHER, TIME])
    choice = done.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (made,) = choice.message.tool_calls
    assert made.type == "function" and made.id.startswith("call_")
    assert (made.function.name, json.loads(made.function.arguments)) == ("get_weather", {"city": "Lyon"})
    assert done.usage.completion_tokens > 0


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}],
                         ids=["required", "named"])
def test_a_forced_call_reaches_the_engine_as_its_constraint(scripted, caller, choice):
    done = sdk(scripted).chat.completions.create(model=caller, messages=QUESTION, tools=[WEATHER, TIME],
                                                 tool_choice=choice)
    assert done.choices[0].finish_reason == "tool_calls"
    made = done.choices[0].message.tool_calls[0]
    assert json.loads(made.function.arguments) == {"city": "Paris", "unit": "celsius"}


@pytest.mark.parametrize("form", [
    {"type": "json_object"},
    # instructor's Responses mode: the format is the call's own schema
    {"type": "json_schema", "json_schema": {"name": "Weather", "schema": WEATHER["function"]["parameters"]}},
    # one no grammar could hold: it is not compiled, there being no text for it to hold
    {"type": "json_schema", "json_schema": {"name": "big", "schema": {"type": "object", "properties": {
        "a": {"type": "string", "maxLength": 100000}, "b": {"type": "array", "minItems": 5000}}}}},
], ids=["json_object", "the-calls-schema", "one-no-grammar-holds"])
def test_a_forced_call_with_a_response_format_is_the_call(scripted, caller, form):
    """OpenAI answers a forced call sent with a response_format with the call: the call is the whole answer."""
    done = sdk(scripted).chat.completions.create(model=caller, messages=QUESTION, tools=[WEATHER],
                                                 tool_choice="required", response_format=form)
    assert done.choices[0].finish_reason == "tool_calls" and done.choices[0].message.content is None
    assert json.loads(done.choices[0].message.tool_calls[0].function.arguments) == {"city": "Paris", "unit": "celsius"}


def test_a_streamed_call_comes_as_openai_streams_it(scripted, caller):
    """The id and name first, with empty arguments; then the arguments; finish_reason tool_calls; the SDK's
    stream helper puts it together."""
    client = sdk(scripted)
    deltas, finish = [], None
    for chunk in client.chat.completions.create(model=caller, messages=QUESTION, tools=[WEATHER], stream=True,
                                                tool_choice="required"):
        deltas += chunk.choices[0].delta.tool_calls or []
        assert not chunk.choices[0].delta.content
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert [d.index for d in deltas] == [0, 0]
    assert deltas[0].id and deltas[0].function.name == "get_weather" and deltas[0].function.arguments == ""
    assert json.loads(deltas[1].function.arguments) == {"city": "Paris", "unit": "celsius"}
    with client.chat.completions.stream(model=caller, messages=QUESTION, tools=[WEATHER],
                                        tool_choice="required") as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_several_calls_in_one_answer_and_the_follow_up_with_the_tools_answer(scripted, caller):
    client = sdk(scripted)
    asked = [{"role": "user", "content": "The weather and the time in Paris?"}]
    done = client.chat.completions.create(model=caller, messages=asked, tools=[WEATHER, TIME])
    calls = done.choices[0].message.tool_calls
    assert [(c.function.name, json.loads(c.function.arguments)) for c in calls] == [
        ("get_weather", {"city": "Paris"}), ("get_time", {"zone": "CET"})]
    assert len({c.id for c in calls}) == 2
    follow = asked + [{"role": "assistant", "content": None, "tool_calls": [c.model_dump() for c in calls]},
                      {"role": "tool", "tool_call_id": calls[0].id, "content": "21 degrees"},
                      {"role": "tool", "tool_call_id": calls[1].id, "content": "10:00"}]
    answer = client.chat.completions.create(model=caller, messages=follow, tools=[WEATHER, TIME])
    assert answer.choices[0].message.content == "It is 21 degrees in Paris."
    assert answer.choices[0].finish_reason == "stop" and not answer.choices[0].message.tool_calls


def test_a_call_to_a_tool_not_offered_stays_text_and_no_tools_means_no_calls(scripted, caller):
    client = sdk(scripted)
    rockets = client.chat.completions.create(model=caller, messages=[{"role": "user", "content": "rockets!"}],
                                             tools=[WEATHER])
    assert rockets.choices[0].finish_reason == "stop" and not rockets.choices[0].message.tool_calls
    assert "launch_rockets" in rockets.choices[0].message.content
    plain = client.chat.completions.create(model=caller, messages=QUESTION, tools=[WEATHER], tool_choice="none")
    assert plain.choices[0].finish_reason == "stop" and "<tool_call>" in plain.choices[0].message.content


@pytest.mark.parametrize(("body", "says"), [
    ({"tool_choice": "required"}, "tool_choice: needs tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice: no tool named 'nope'"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "multipleOf": 2}}}}}], "tool_choice": "required"},
     "tools[0].function.parameters.properties.n.multipleOf"),
    # (found by attacking the moved $defs: each was a 200 whose call was not a call, or a 400 in other words)
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
      "tool_choice": "required"}, "tools[0].function.parameters: a tool's arguments are an object"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "$ref": "#/$defs/P", "$defs": {"P": {"type": "string"}}}}}], "tool_choice": "required"},
     "tools[0].function.parameters: a tool's arguments are an object"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"$ref": "#/$defs/Nope"}}}}}], "tool_choice": "required"},
     "tools[0].function.parameters.properties.a.$ref: '#/$defs/Nope' points at nothing in the schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"a": {"$ref": "#/$defs/A"}},
        "$defs": {"A": {"$ref": "#/$defs/B"}, "B": {"$ref": "#/$defs/A"}}}}}], "tool_choice": "required"},
     "comes back to itself before any value"),
    ({"tools": [WEATHER], "tool_choice": "required", "grammar": 'root ::= "x"'},
     "grammar: a forced tool call has its own grammar"),
    ({"functions": [{"name": "f"}]}, "functions: function calling is not served"),
])
def test_what_cannot_be_served_is_one_line(scripted, caller, body, says):
    response = httpx.post(f"{scripted.url}/v1/chat/completions", timeout=30,
                          json={"model": caller, "messages": QUESTION, **body})
    assert response.status_code == 400, response.text
    assert says in response.json()["detail"] and "\n" not in response.json()["detail"]


def test_a_model_without_the_tools_ability_says_so_and_a_grammarless_one_refuses_forced_calls(scripted, tmp_path):
    client = Client(scripted.url)
    plain = scripted_spec("no-tools", tmp_path / "no-tools", [{"reply": "hi"}], abilities=["chat"])
    with launched(client, "no-tools", plain, model_engine="scripted") as uid:
        response = httpx.post(f"{scripted.url}/v1/chat/completions", timeout=30, json={
            "model": uid, "messages": QUESTION, "tools": [WEATHER]})
        assert response.status_code == 400 and "does not call tools" in response.json()["detail"]
        assert httpx.post(f"{scripted.url}/v1/chat/completions", timeout=30, json={
            "model": uid, "messages": QUESTION, "tools": [WEATHER], "tool_choice": "none"}).status_code == 200
    grammarless = scripted_spec("grammarless", tmp_path / "grammarless",
                                {"rules": [{"reply": call("get_weather", city="Oslo")}], "grammars": False},
                                abilities=["chat", "tools"])
    with launched(client, "grammarless", grammarless, model_engine="scripted") as uid:
        forced = httpx.post(f"{scripted.url}/v1/chat/completions", timeout=30, json={
            "model": uid, "messages": QUESTION, "tools": [WEATHER], "tool_choice": "required"})
        assert forced.status_code == 400
        assert forced.json()["detail"].startswith("tool_choice: a forced call needs a grammar: grammars are not")
        auto = httpx.post(f"{scripted.url}/v1/chat/completions", timeout=30, json={
            "model": uid, "messages": QUESTION, "tools": [WEATHER]})
        assert auto.json()["choices"][0]["finish_reason"] == "tool_calls"


# --- calls a client cannot act on (hostile: the model is made to write them) ---------------------------------

def raw_call(name: str, arguments: str) -> str:
    return f'<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


DEEP = "[" * 1000 + "1" + "]" * 1000
UNACTIONABLE = {
    "nan-case": raw_call("get_weather", '{"city": NaN}'),  # not JSON: a client's parser fails on it
    "infinity-case": raw_call("get_weather", '{"city": -Infinity}'),
    "huge-case": raw_call("get_weather", '{"city": 1e999}'),
    "not-offered-case": raw_call("delete_everything", '{"path": "/"}'),
    "deep-case": raw_call("get_weather", '{"city": ' + DEEP + "}"),  # a RecursionError in the reader, once
    "paris-case": raw_call("get_weather", '{"city": "Paris"}'),
}


@pytest.fixture(scope="module")
def hostile_caller(scripted: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    rules = [{"match": key, "reply": [text]} for key, text in UNACTIONABLE.items()]
    rules += [{"match": "Once upon", "reply": " and", "repeat": 200, "delay": 0.005}, {"reply": "ok"}]
    spec = scripted_spec("hostile-caller", tmp_path_factory.mktemp("hostile"), {"slots": 4, "rules": rules},
                         abilities=["generate", "chat", "tools"])
    with launched(Client(scripted.url), "hostile-caller", spec, model_engine="scripted") as uid:
        yield uid


def _answer(server: servers.ServerProcess, uid: str, prompt: str, stream: bool) -> tuple[str, list[dict[str, Any]]]:
    """A chat answer's content and calls, the weather tool offered, read whole or as OpenAI streams it."""
    body = {"model": uid, "messages": [{"role": "user", "content": prompt}], "tools": [WEATHER], "stream": stream}
    with httpx.Client(base_url=server.url, timeout=60) as h:
        if not stream:
            answer = h.post("/v1/chat/completions", json=body)
            assert answer.status_code == 200, answer.text[:300]
            message = answer.json()["choices"][0]["message"]
            return message["content"] or "", message.get("tool_calls") or []
        content, calls = "", {}
        with h.stream("POST", "/v1/chat/completions", json=body) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    data = json.loads(line[6:])
                    assert "error" not in data, data
                    for choice in data["choices"]:
                        content += choice["delta"].get("content") or ""
                        for delta in choice["delta"].get("tool_calls") or []:  # id and name, then arguments
                            made = calls.setdefault(delta["index"], {"function": {"name": "", "arguments": ""}})
                            for key in ("name", "arguments"):
                                made["function"][key] += delta["function"].get(key) or ""
        return content, list(calls.values())


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_calls_a_client_cannot_act_on_come_back_as_the_text_the_model_wrote(scripted, hostile_caller, stream):
    """Arguments with NaN or Infinity, a call to a function the request never offered and a call a thousand
    levels deep are the answer's text, whole and streamed; a call to the offered tool is still a call; the
    worker lives on."""
    pid = Client(scripted.url).describe_model(hostile_caller)["pid"]
    for key, text in UNACTIONABLE.items():
        if key == "paris-case":
            continue
        content, calls = _answer(scripted, hostile_caller, key, stream)
        assert calls == [] and content == text, (key, content[:200], calls)
    content, calls = _answer(scripted, hostile_caller, "paris-case", stream)
    assert content == "" and len(calls) == 1 and json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}
    described = Client(scripted.url).describe_model(hostile_caller)
    assert described["pid"] == pid and described.get("restarts", 0) == 0


def test_a_call_a_thousand_levels_deep_ends_nobody_elses_stream(scripted, hostile_caller):
    """One request's deep call is read while another client's stream shares the batch: that stream goes on to
    its own end (one deep call failed the whole batch, once)."""
    other: dict[str, Any] = {}

    def other_client() -> None:
        pieces, finish = [], None
        with httpx.Client(base_url=scripted.url, timeout=60) as h, h.stream("POST", "/v1/completions", json={
                "model": hostile_caller, "prompt": "Once upon a time", "max_tokens": 150, "stream": True}) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    event = json.loads(line[6:])
                    assert "error" not in event, event
                    pieces.append(event["choices"][0]["text"])
                    finish = event["choices"][0]["finish_reason"] or finish
        other.update(text="".join(pieces), finish=finish)

    thread = threading.Thread(target=other_client)
    thread.start()
    time.sleep(0.2)
    content, calls = _answer(scripted, hostile_caller, "deep-case", stream=True)
    thread.join()
    assert calls == [] and DEEP in content
    assert other["finish"] == "length" and other["text"] == " and" * 150, other


def test_a_tool_parser_xitui_cannot_read_refuses_tools_and_still_chats(scripted, tmp_path):
    """A glm-5 family spec with Xinference's glm5 parser registers and answers; a request with tools is one line
    (xitui does not read that syntax), not calls read in the wrong syntax."""
    spec = scripted_spec("glm5-like", tmp_path / "glm5", RULES, abilities=["chat", "tools"],
                         model_family="glm-5", tool_parser="glm5")
    client = Client(scripted.url)
    with launched(client, "glm5-like", spec, model_engine="scripted") as uid, \
            httpx.Client(base_url=scripted.url, timeout=60) as h:
        refused = h.post("/v1/chat/completions", json={"model": uid, "messages": QUESTION, "tools": [WEATHER]})
        assert refused.status_code == 400, refused.text
        assert refused.json()["detail"].startswith("tools: xitui does not read 'glm5' tool calls yet")
        plain = h.post("/v1/chat/completions", json={"model": uid, "messages": QUESTION})
        assert plain.status_code == 200 and plain.json()["choices"][0]["message"]["content"]
