"""OpenAI's Responses API on real weights (the bundled SmolLM2 GGUF) through the openai SDK: a response whole and
streamed is the same greedy text as chat completions', a forced function call follows its schema and its
output is answered, and a json_schema format holds the answer to the schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.conftest import ServerProcess
from xitui.client import Client

openai = pytest.importorskip("openai")

MODEL = "demo-smollm2-135m"
WEATHER = {"type": "function", "name": "get_weather", "description": "The weather in a city", "parameters": {
    "type": "object", "additionalProperties": False, "required": ["city", "unit"], "properties": {
        "city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}}}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def uid(server: ServerProcess) -> Iterator[str]:
    client = Client(server.url)
    name = client.launch_model(model_name=MODEL, model_uid="responses")
    yield name
    client.terminate_model(name)


def sdk(server: ServerProcess) -> Any:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


def test_a_response_whole_and_streamed_is_chat_completions_greedy_text(server, uid):
    client = sdk(server)
    asked = {"model": uid, "instructions": "You are a helpful assistant.", "input": "Name three colours.",
             "max_output_tokens": 24, "temperature": 0}
    whole = client.responses.create(**asked)
    assert whole.output_text.strip() and whole.usage.output_tokens <= 24
    with client.responses.stream(**asked) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert text == whole.output_text == final.output_text
    chat = httpx.post(f"{server.url}/v1/chat/completions", timeout=120, json={
        "model": uid, "max_tokens": 24, "temperature": 0, "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Name three colours."}]}).json()
    assert chat["choices"][0]["message"]["content"] == text


def test_a_forced_function_call_follows_its_schema_and_its_output_is_answered(server, uid):
    client = sdk(server)
    forced = client.responses.create(model=uid, input=QUESTION, tools=[WEATHER], temperature=0,
                                     tool_choice={"type": "function", "name": "get_weather"}, max_output_tokens=120)
    (called,) = forced.output
    arguments = json.loads(called.arguments)
    assert called.type == "function_call" and called.name == "get_weather"
    assert set(arguments) == {"city", "unit"} and arguments["unit"] in ("celsius", "fahrenheit")
    answer = client.responses.create(model=uid, tools=[WEATHER], temperature=0, max_output_tokens=40, input=[
        *QUESTION, {"type": "function_call", "call_id": called.call_id, "name": called.name,
                    "arguments": called.arguments},
        {"type": "function_call_output", "call_id": called.call_id, "output": "21 degrees and sunny"}])
    assert answer.output[-1].type == "message" and answer.output_text.strip()


def test_a_json_schema_format_holds_the_answer(server, uid):
    schema = {"type": "object", "additionalProperties": False, "required": ["city", "country"], "properties": {
        "city": {"type": "string", "maxLength": 30}, "country": {"type": "string", "maxLength": 30}}}
    done = sdk(server).responses.create(model=uid, input="Name a city and its country.", temperature=0,
                                        max_output_tokens=80, text={"format": {
                                            "type": "json_schema", "name": "place", "schema": schema}})
    place = json.loads(done.output_text)
    assert set(place) == {"city", "country"} and done.status == "completed"
