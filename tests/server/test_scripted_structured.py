"""Structured output, the server's side, against a scripted model: what a request's response_format or grammar
becomes on its way to the engine, the openai SDK's schemas taken as they come, and what no grammar can hold an
answer to refused with one line before any model runs. (That the engine holds answers to the form is the engines'
to show, with weights: test_structured.py, slow.)"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, Field

from tests.support import servers
from tests.support.models import launched
from tests.support.specs import scripted_spec
from xitui.client import Client


class Address(BaseModel):
    city: str = Field(max_length=40)
    country: str = Field(max_length=40)


class Person(BaseModel):
    name: str = Field(max_length=40)
    home: Address


RULES = [
    {"match": "which form", "echo": "constraint"},
    {"match": "settings", "echo": "params"},
    {"constraint": "json_schema", "reply": ['{"name": "Ada", ', '"home": {"city": "London", ', '"country": "UK"}}']},
    {"constraint": "json", "reply": '{"ok": true}'},
    {"reply": "Free text."},
]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30}}, "required": ["city"]}


@pytest.fixture(scope="module")
def shaper(scripted: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = scripted_spec("shaper", tmp_path_factory.mktemp("shaper"), RULES, abilities=["generate", "chat"])
    with launched(Client(scripted.url), "shaper", spec, model_engine="scripted") as uid:
        yield uid


def chat(server: servers.ServerProcess, uid: str, content: str, **extra: Any) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", timeout=30, json={
        "model": uid, "messages": [{"role": "user", "content": content}], **extra})


@pytest.mark.parametrize(("extra", "form"), [
    ({}, None),
    ({"response_format": {"type": "text"}}, None),
    ({"response_format": {"type": "json_object"}}, {"json": True}),
    ({"response_format": {"type": "json_object", "schema": SCHEMA}}, {"json_schema": SCHEMA}),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "city", "schema": SCHEMA, "strict": True}}},
     {"json_schema": SCHEMA}),
    ({"grammar": 'root ::= "yes" | "no"'}, {"gbnf": 'root ::= "yes" | "no"'}),
], ids=["free", "text", "json-object", "json-object-schema", "json-schema", "gbnf"])
def test_the_engine_is_asked_for_the_form_the_request_names(scripted, shaper, extra, form):
    response = chat(scripted, shaper, "which form?", **extra)
    assert response.status_code == 200, response.text
    assert json.loads(response.json()["choices"][0]["message"]["content"]) == form


def test_sampling_settings_reach_the_engine_as_sent(scripted, shaper):
    response = chat(scripted, shaper, "settings?", temperature=0.25, top_p=0.5, seed=7, max_tokens=300,
                    stop=["END"], presence_penalty=0.5)
    got = json.loads(response.json()["choices"][0]["message"]["content"])
    assert {k: got[k] for k in ("temperature", "top_p", "seed", "max_tokens", "presence_penalty")} == {
        "temperature": 0.25, "top_p": 0.5, "seed": 7, "max_tokens": 300, "presence_penalty": 0.5}
    assert got["stop"] == ["END", "<|im_end|>"]  # the request's stop words, then the spec's


def test_the_openai_sdks_parse_whole_and_streamed(scripted, shaper):
    """The SDK's schema from a pydantic model (strict, additionalProperties false, every field required) is
    taken as it comes; an answer of that form comes back parsed."""
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=f"{scripted.url}/v1", api_key="none", max_retries=0)
    question = [{"role": "user", "content": "Who is she?"}]
    done = sdk.chat.completions.parse(model=shaper, messages=question, response_format=Person)
    assert done.choices[0].message.parsed == Person(name="Ada", home=Address(city="London", country="UK"))
    pieces = []
    with sdk.chat.completions.stream(model=shaper, messages=question, response_format=Person) as stream:
        for event in stream:
            if event.type == "content.delta":
                pieces.append(event.delta)
        final = stream.get_final_completion()
    assert [p for p in pieces if p] == RULES[2]["reply"]
    assert Person.model_validate_json("".join(pieces)) == final.choices[0].message.parsed
    loose = sdk.chat.completions.create(model=shaper, messages=question, response_format={"type": "json_object"})
    assert json.loads(loose.choices[0].message.content) == {"ok": True}


def test_completions_take_a_grammar_and_a_response_format_too(scripted, shaper):
    model = Client(scripted.url).get_model(shaper)
    assert json.loads(model.generate("which form?", {"grammar": "root ::= [a-z]+"})["choices"][0]["text"]) == {
        "gbnf": "root ::= [a-z]+"}
    shaped = model.generate("Who?", {"response_format": {"type": "json_object"}})
    assert json.loads(shaped["choices"][0]["text"]) == {"ok": True}


@pytest.mark.parametrize(("extra", "says"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "object", "properties": {"age": {"type": "integer", "multipleOf": 2}}}}}},
     "response_format.json_schema.schema.properties.age.multipleOf: 'multipleOf' cannot be enforced"),
    *[({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "integer", bound: value}}}}, f"schema.{bound}: a number from -2**53 to 2**53")
      for bound, value in (("minimum", "0"), ("maximum", True), ("exclusiveMinimum", 1e300),
                           ("exclusiveMaximum", None), ("minimum", [1]))],
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "string", "format": "email"}}}}, "format 'email' cannot be enforced"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema: required when the type is"),
    ({"response_format": {"type": "xml"}}, "response_format.type"),
    ({"response_format": {"type": "json_object"}, "grammar": "root ::= \"x\""},
     "grammar: give either a grammar or a response_format, not both"),
    ({"grammar": "   "}, "grammar: a GBNF grammar of at most 64 KiB"),
    ({"response_format": {"type": "json_object"}, "ignore_eos": True}, "ignore_eos"),
    ({"n": 17}, "n: Input should be less than or equal to 16"),
    ({"best_of": 3}, "best_of is not served"),
    ({"top_logprobs": 2}, "top_logprobs: needs logprobs: true"),
    ({"logit_bias": {"1": 5}}, "logit_bias"),
])
def test_what_cannot_be_served_is_refused_with_one_line(scripted, shaper, extra, says):
    response = chat(scripted, shaper, "hi", **extra)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert says in detail and "\n" not in detail


def test_an_engine_without_grammars_refuses_a_form_with_one_line(scripted, tmp_path):
    spec = scripted_spec("formless", tmp_path / "formless", {"rules": [{"reply": "{}"}], "grammars": False})
    with launched(Client(scripted.url), "formless", spec, model_engine="scripted") as uid:
        refused = chat(scripted, uid, "hi", response_format={"type": "json_object"})
        assert refused.status_code == 400
        assert refused.json()["detail"] == "grammars are not served by this scripted model (its script says " \
                                           "grammars: false)"
        assert chat(scripted, uid, "hi").status_code == 200
