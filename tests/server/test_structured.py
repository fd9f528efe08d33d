"""Answers of a given form, enforced while they are written (the bundled SmolLM2 GGUF through the openai SDK),
and the OpenAI fields the server does not serve refused with one line instead of ignored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from enum import Enum
from typing import Any

import pytest
from pydantic import BaseModel, Field

from tests.server.conftest import ServerProcess
from xitui.client import Client

MODEL = "demo-smollm2-135m"


class Address(BaseModel):
    city: str = Field(max_length=40)
    country: str = Field(max_length=40)


class Person(BaseModel):
    name: str = Field(max_length=40)
    home: Address


class Colour(str, Enum):
    red = "red"
    green = "green"
    blue = "blue"


class Sky(BaseModel):
    colour: Colour


class Primes(BaseModel):
    primes: list[int] = Field(min_length=2, max_length=4)


@pytest.fixture(scope="module", params=["batch", "single"])
def uid(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[str]:
    """The model with 4 slots and with one (n_parallel 1): the same engine, batches of one or several."""
    client = Client(server.url)
    name = f"json-{request.param}"
    client.launch_model(model_name=MODEL, model_uid=name, n_parallel=4 if request.param == "batch" else 1)
    yield name
    client.terminate_model(name)


def openai_client(server: ServerProcess):  # noqa: ANN201 - the SDK's own type
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


@pytest.mark.parametrize(("schema", "question"), [
    (Person, "Give a person and where they live, as JSON."),
    (Sky, "What colour is the sky? Answer as JSON."),
    (Primes, "List a few prime numbers as JSON."),
], ids=["nested", "enum", "array-bounds"])
def test_parse_returns_an_object_of_the_schema(server: ServerProcess, uid: str, schema: type[BaseModel],
                                               question: str) -> None:
    """The openai SDK's parse() gets an object of the pydantic model back, however small the model."""
    done = openai_client(server).chat.completions.parse(
        model=uid, messages=[{"role": "user", "content": question}], response_format=schema,
        max_tokens=200, temperature=0)
    choice = done.choices[0]
    assert choice.finish_reason == "stop", choice.message.content
    assert isinstance(choice.message.parsed, schema)


def test_a_streamed_answer_follows_the_schema_too(server: ServerProcess, uid: str) -> None:
    sdk = openai_client(server)
    pieces = []
    with sdk.chat.completions.stream(model=uid, messages=[{"role": "user", "content": "Where is Paris?"}],
                                     response_format=Person, max_tokens=200, temperature=0.7, seed=3) as stream:
        for event in stream:
            if event.type == "content.delta":
                pieces.append(event.delta)
        final = stream.get_final_completion()
    assert len(pieces) > 3  # it streamed
    assert isinstance(final.choices[0].message.parsed, Person)
    assert Person.model_validate_json("".join(pieces)) == final.choices[0].message.parsed


def test_ranges_hold_in_a_response_format_sampled_or_not(server: ServerProcess, uid: str) -> None:
    """`Field(ge=0, le=150)` and `gt`/`lt` on a float, in a nested model with an Enum: every answer parses."""
    from tests.support.pydantic_tools import Person as Recorded

    sdk = openai_client(server)
    question = [{"role": "user", "content": "Describe a person as JSON."}]
    for seed in (None, 1, 2, 3):
        done = sdk.chat.completions.parse(model=uid, messages=question, response_format=Recorded, max_tokens=200,
                                          temperature=0 if seed is None else 1.0, seed=seed)
        assert isinstance(done.choices[0].message.parsed, Recorded), done.choices[0].message.content


def test_json_object_and_a_gbnf_grammar_on_completions(server: ServerProcess, uid: str) -> None:
    client = Client(server.url)
    whole = client.get_model(uid).chat([{"role": "user", "content": "Describe a cat as JSON."}], generate_config={
        "response_format": {"type": "json_object"}, "max_tokens": 200, "temperature": 0})
    assert isinstance(json.loads(whole["choices"][0]["message"]["content"]), dict)
    answer = client.get_model(uid).generate("Is the sea wet? Answer:", generate_config={
        "grammar": 'root ::= " " ("yes" | "no")', "max_tokens": 20})
    assert answer["choices"][0]["text"] in (" yes", " no")
    assert answer["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(("extra", "says"), [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "object", "properties": {"age": {"type": "integer", "multipleOf": 2}}}}}},
     "response_format.json_schema.schema.properties.age.multipleOf: 'multipleOf' cannot be enforced"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "string", "format": "email"}}}}, "format 'email' cannot be enforced"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "integer", "minimum": 10, "maximum": 5}}}}, "minimum (10) is greater than maximum (5)"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {
        "type": "integer", "exclusiveMinimum": 1, "exclusiveMaximum": 2}}}}, "contains no integer values"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"n": {"type": "integer", "minimum": 3, "maximum": 2}},
        "required": ["n"]}}}],
      "tool_choice": "required"}, "tool_choice: a forced call needs a grammar"),
    ({"grammar": "not a grammar"}, "grammar: cannot be parsed"),
    ({"n": 17}, "n: Input should be less than or equal to 16"),
    ({"best_of": 3}, "best_of is not served"),
    ({"top_logprobs": 2}, "top_logprobs: needs logprobs: true"),
    ({"logit_bias": {"1": 5}}, "logit_bias"),
    ({"response_format": {"type": "json_object"}, "ignore_eos": True}, "ignore_eos"),
])
def test_what_is_not_served_is_refused_with_one_line(server: ServerProcess, uid: str, extra: dict,
                                                     says: str) -> None:
    import httpx

    body = {"model": uid, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, **extra}
    response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
    assert response.status_code == 400, response.text
    detail = response.json()["detail"]
    assert says in detail and "\n" not in detail and "%llguidance" not in detail


def test_the_cli_prints_json_of_the_schema(server: ServerProcess, uid: str, tmp_path) -> None:
    """`xitui chat --schema FILE` prints JSON that follows it; a schema no grammar can enforce is one line."""
    import subprocess

    from tests.conftest import xitui_cmd

    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 30},
                                               "country": {"type": "string", "maxLength": 30}},
              "required": ["city", "country"], "additionalProperties": False}
    path = tmp_path / "city.json"
    path.write_text(json.dumps(schema))
    done = subprocess.run([*xitui_cmd(), "chat", "-u", uid, "-e", server.url, "--schema", str(path), "--no-save",
                           "--temperature", "0", "Where is the Eiffel tower?"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert set(answer) == {"city", "country"} and all(isinstance(v, str) for v in answer.values())
    refused = subprocess.run([*xitui_cmd(), "generate", "-u", uid, "-e", server.url, "--schema",
                              '{"type": "string", "format": "email"}', "x"], capture_output=True, text=True,
                             timeout=60)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines() == [
        "error: --schema.format: format 'email' cannot be enforced (enforced: date, date-time, time, uuid, uuid1, "
        "uuid2, uuid3, uuid4, uuid5)"]


def test_log_probabilities_of_each_token_with_alternatives(server: ServerProcess, uid: str) -> None:
    """Chat (the openai SDK, whole and streamed) and completions: one entry per generated token, its text
    adding up to the answer, with the asked number of alternatives, the greedy pick the likeliest."""

    sdk = openai_client(server)
    question = [{"role": "user", "content": "Name a colour."}]
    whole = sdk.chat.completions.create(model=uid, messages=question, max_tokens=12, temperature=0,
                                        logprobs=True, top_logprobs=3)
    choice = whole.choices[0]
    entries = choice.logprobs.content
    assert "".join(e.token for e in entries) == choice.message.content
    ended = 1 if choice.finish_reason == "stop" else 0  # the end-of-turn token is counted, not shown
    assert len(entries) == whole.usage.completion_tokens - ended
    for entry in entries:
        assert len(entry.top_logprobs) == 3 and entry.logprob <= 0
        assert [t.logprob for t in entry.top_logprobs] == sorted((t.logprob for t in entry.top_logprobs), reverse=True)
        assert entry.top_logprobs[0].token == entry.token and entry.top_logprobs[0].logprob == entry.logprob
        assert bytes(entry.bytes).decode() == entry.token
    streamed = []
    for chunk in sdk.chat.completions.create(model=uid, messages=question, max_tokens=12, temperature=0,
                                             logprobs=True, stream=True):
        if chunk.choices and chunk.choices[0].logprobs and chunk.choices[0].logprobs.content:
            streamed += chunk.choices[0].logprobs.content
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in entries]
    assert all(e.top_logprobs == [] for e in streamed)

    done = sdk.completions.create(model=uid, prompt="One, two,", max_tokens=5, temperature=0, logprobs=2)
    found = done.choices[0].logprobs
    assert "".join(found.tokens) == done.choices[0].text and len(found.tokens) == 5
    assert found.text_offset == [sum(len(t) for t in found.tokens[:i]) for i in range(5)]
    assert all(len(top) <= 2 and max(top.values()) == lp for top, lp in zip(found.top_logprobs,
                                                                            found.token_logprobs, strict=True))


def test_several_choices_at_once(server: ServerProcess, uid: str) -> None:
    """`n` choices, whole (the openai SDK) and streamed (each chunk names its choice; a last chunk carries
    the usage of them all), each following the response_format when one is given."""
    sdk = openai_client(server)
    question = [{"role": "user", "content": "What colour is the sky?"}]
    whole = sdk.chat.completions.parse(model=uid, messages=question, n=3, seed=7, temperature=0.9, max_tokens=60,
                                       response_format=Sky)
    assert [c.index for c in whole.choices] == [0, 1, 2]
    assert all(isinstance(c.message.parsed, Sky) for c in whole.choices)
    texts: dict[int, str] = {}
    finished, usage = set(), None
    for chunk in sdk.chat.completions.create(model=uid, messages=question, n=2, max_tokens=8, stream=True):
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + (choice.delta.content or "")
            if choice.finish_reason:
                finished.add(choice.index)
        if chunk.usage is not None:
            assert chunk.choices == [] and usage is None
            usage = chunk.usage
    assert finished == {0, 1} and all(texts.values())
    assert usage is not None and usage.completion_tokens >= 2
    done = sdk.completions.create(model=uid, prompt="One, two,", n=2, max_tokens=3, temperature=0)
    assert [c.index for c in done.choices] == [0, 1] and done.choices[0].text == done.choices[1].text
    assert done.usage.completion_tokens == 6


def test_a_thinking_model_reasons_freely_then_answers_in_the_form(server: ServerProcess, small_gguf) -> None:
    """A thinking model's schema or forced call holds from the end of its thought: it reasons in its own words
    first. SmolLM2 does not think: its spec here calls a thought what it writes after "Reasoning:" (the prompt
    opens it, as a thinking model's template does) up to its first full stop."""
    from tests.support.models import launched
    from tests.support.specs import gguf_spec

    spec = json.loads(gguf_spec("smol-thinks", small_gguf, version=2))
    spec.update(model_ability=["chat", "tools", "reasoning"], reasoning_start_tag="Reasoning:",
                reasoning_end_tag=".")
    sdk = openai_client(server)
    with launched(Client(server.url), "smol-thinks", json.dumps(spec)) as uid:
        weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object", "properties": {"city": {"type": "string", "maxLength": 40}}, "required": ["city"]}}}
        assert thinks_then_answers_in_the_form(sdk, uid, weather)["city"]


def thinks_then_answers_in_the_form(sdk: Any, uid: str, tool: dict[str, Any], streamed: bool = True) -> dict[str, Any]:
    """A schema's answer whole (and streamed), then a forced call of `tool`, from a model whose thought ends at
    its first full stop: each reasons in its own words, then answers in the form. The call's arguments."""
    asked = {"model": uid, "temperature": 0, "max_tokens": 200,
             "messages": [{"role": "user", "content": "Where is the Eiffel tower?"}]}
    done = sdk.beta.chat.completions.parse(**asked, response_format=Address)
    message = done.choices[0].message
    assert message.reasoning_content.strip() and "{" not in message.reasoning_content  # (its own words)
    assert isinstance(message.parsed, Address) and done.choices[0].finish_reason == "stop"

    if streamed:
        reasoning, content = "", ""
        for chunk in sdk.chat.completions.create(**asked, stream=True, response_format={
                "type": "json_schema", "json_schema": {"name": "a", "schema": Address.model_json_schema()}}):
            delta = chunk.choices[0].delta if chunk.choices else None
            if delta is not None:
                reasoning += getattr(delta, "reasoning_content", None) or ""
                assert not (content and getattr(delta, "reasoning_content", None))  # the thought comes first
                content += delta.content or ""
        assert reasoning == message.reasoning_content and Address.model_validate_json(content)

    called = sdk.chat.completions.create(**{**asked, "messages": [
        {"role": "user", "content": "What is the weather in Paris?"}]}, tools=[tool], tool_choice="required")
    message = called.choices[0].message
    assert message.reasoning_content.strip() and called.choices[0].finish_reason == "tool_calls"
    return json.loads(message.tool_calls[0].function.arguments)


def thinking_spec(name: str, gguf, **extra: object) -> str:
    """SmolLM2 as a thinking model: it does not think, so `extra`'s tags say what a thought is."""
    from tests.support.specs import gguf_spec

    spec = json.loads(gguf_spec(name, gguf, version=2))
    spec.update(model_ability=["chat", "tools", "reasoning"], **extra)
    return json.dumps(spec)


def test_a_thought_the_model_never_closes_is_closed_for_it_and_the_answer_has_the_form(server: ServerProcess,
                                                                                       small_gguf) -> None:
    """SmolLM2 never writes "</reason>": it ends its turn inside the thought, and a schema or a forced call was
    answered with nothing (finish_reason "stop", no content). The end tag is written for it instead of the end,
    then the answer in the form; count_tokens counts the prompt as message_start and the usage do."""
    import httpx

    from tests.support.models import launched

    spec = thinking_spec("smol-never-closes", small_gguf, reasoning_start_tag="<reason>",
                         reasoning_end_tag="</reason>")
    with launched(Client(server.url), "smol-never-closes", spec) as uid:
        asked = {"model": uid, "temperature": 0, "max_tokens": 200,
                 "messages": [{"role": "user", "content": "Where is the Eiffel tower?"}]}
        done = openai_client(server).beta.chat.completions.parse(**asked, response_format=Address)
        message = done.choices[0].message
        assert message.reasoning_content.strip() and isinstance(message.parsed, Address)
        assert done.choices[0].finish_reason == "stop"

        weather = {"name": "get_weather", "input_schema": {"type": "object", "required": ["city"],
                                                           "properties": {"city": {"type": "string", "maxLength": 40}}}}
        body = {"model": uid, "tools": [weather], "tool_choice": {"type": "any"}, "messages": asked["messages"]}
        counted = httpx.post(f"{server.url}/v1/messages/count_tokens", json=body, timeout=60).json()["input_tokens"]
        with httpx.stream("POST", f"{server.url}/v1/messages", timeout=120, json={
                **body, "max_tokens": 200, "temperature": 0, "stream": True}) as reply:
            data = [json.loads(line.removeprefix("data: ")) for line in reply.iter_lines()
                    if line.startswith("data: ")]
        assert data[0]["message"]["usage"]["input_tokens"] == counted == data[-2]["usage"]["input_tokens"]
        kinds = [d["content_block"]["type"] for d in data if d["type"] == "content_block_start"]
        assert kinds[0] == "thinking" and "tool_use" in kinds and data[-2]["delta"]["stop_reason"] == "tool_use"


def test_thinking_turned_off_holds_the_form_from_the_first_token(server: ServerProcess, small_gguf) -> None:
    """A template that leaves the thought out when thinking is off (Qwen 3's way, `enable_thinking`; Anthropic's
    `thinking: disabled`): the answer is in the form from its first token, no thought opened for it."""
    import httpx

    from tests.support.models import launched
    from tests.support.specs import THINKING_CHATML

    spec = thinking_spec("smol-thinks-off", small_gguf, chat_template=THINKING_CHATML)
    with launched(Client(server.url), "smol-thinks-off", spec) as uid:
        done = openai_client(server).beta.chat.completions.parse(
            model=uid, temperature=0, max_tokens=100, response_format=Address,
            messages=[{"role": "user", "content": "Where is the Eiffel tower?"}],
            extra_body={"chat_template_kwargs": {"enable_thinking": False}})
        message = done.choices[0].message
        assert isinstance(message.parsed, Address) and not getattr(message, "reasoning_content", None)
        weather = {"name": "get_weather", "input_schema": {"type": "object", "required": ["city"],
                                                           "properties": {"city": {"type": "string", "maxLength": 40}}}}
        used = httpx.post(f"{server.url}/v1/messages", timeout=120, json={
            "model": uid, "max_tokens": 100, "temperature": 0, "thinking": {"type": "disabled"}, "tools": [weather],
            "tool_choice": {"type": "tool", "name": "get_weather"},
            "messages": [{"role": "user", "content": "What is the weather in Paris?"}]}).json()
        assert [b["type"] for b in used["content"]] == ["tool_use"] and used["stop_reason"] == "tool_use"


@pytest.mark.parametrize("tag", ["n.n.", "<|endoftext|>", "<|im_start|>"], ids=["overlapping", "end-token", "control"])
def test_an_end_tag_written_for_the_model_is_written_once_then_the_form(server: ServerProcess, small_gguf,
                                                                        tag: str) -> None:
    """Found by attacking the change: a tag written for the model went on being written after its text had
    closed the thought ("n.n." after "Ocean.": the answer `n.{}`); a tag that is the vocabulary's end of text
    ended the answer empty, a control token showed no text and the thought never closed. Tags are written as
    their text where the token would not show it."""
    from tests.support.models import launched

    spec = thinking_spec("smol-tag", small_gguf, reasoning_start_tag="<r>", reasoning_end_tag=tag)
    with launched(Client(server.url), "smol-tag", spec) as uid:
        done = openai_client(server).chat.completions.create(
            model=uid, temperature=0, max_tokens=200, response_format={"type": "json_object"},
            messages=[{"role": "user", "content": "Name the largest ocean in the world."}])
        assert done.choices[0].finish_reason == "stop" and done.choices[0].message.reasoning_content
        assert isinstance(json.loads(done.choices[0].message.content), dict)
