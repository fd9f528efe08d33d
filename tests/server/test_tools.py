"""Tool calling against a real server (the bundled SmolLM2 GGUF through the openai SDK and xinference-client):
forced calls follow the tool's schema whole and streamed, the follow-up with the tool's answer gets an
answer, templates that render tools get them, and what cannot be served is one line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import ServerProcess, gguf_spec
from tests.support.models import launched
from xitui.client import Client

MODEL = "demo-smollm2-135m"
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "additionalProperties": False, "required": ["city", "unit"], "properties": {
        "city": {"type": "string", "maxLength": 40}, "unit": {"enum": ["celsius", "fahrenheit"]}}}}}
TIME = {"type": "function", "function": {"name": "get_time", "parameters": {
    "type": "object", "properties": {"zone": {"type": "string", "maxLength": 20}}, "required": ["zone"]}}}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def uid(server: ServerProcess) -> Iterator[str]:
    client = Client(server.url)
    name = client.launch_model(model_name=MODEL, model_uid="tooling")
    yield name
    client.terminate_model(name)


def sdk(server: ServerProcess):  # noqa: ANN201 - the SDK's own type
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


def valid_weather(arguments: str) -> dict:
    args = json.loads(arguments)
    assert set(args) == {"city", "unit"} and args["unit"] in ("celsius", "fahrenheit")
    assert isinstance(args["city"], str) and len(args["city"]) <= 40
    return args


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}],
                         ids=["required", "named"])
def test_a_forced_call_follows_the_tools_schema_and_the_follow_up_is_answered(server, uid, choice):
    client = sdk(server)
    done = client.chat.completions.create(model=uid, messages=QUESTION, tools=[WEATHER, TIME], tool_choice=choice,
                                          temperature=0, max_tokens=120)
    message = done.choices[0].message
    assert done.choices[0].finish_reason == "tool_calls" and message.content is None
    call = message.tool_calls[0]
    if choice != "required":
        assert call.function.name == "get_weather"
    if call.function.name == "get_weather":
        valid_weather(call.function.arguments)
    follow = QUESTION + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                         {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21, "unit": "celsius"}'}]
    answer = client.chat.completions.create(model=uid, messages=follow, tools=[WEATHER, TIME], temperature=0,
                                            max_tokens=40)
    assert answer.choices[0].message.content or answer.choices[0].message.tool_calls


def test_a_pydantic_models_tool_with_definitions_an_enum_and_ranges_is_called_as_it_says(server, uid):
    """pydantic-ai's and instructor's forced output tool: its parameters hold `$defs` (a nested model, an Enum)
    and ranges (`Field(ge=0, le=150)`, `gt`/`lt` on a float). The call parses into the model every time, whole
    and streamed; the SDK's `parse` reads it back as the model."""
    from tests.support.pydantic_tools import Person, as_tools

    client = sdk(server)
    question = [{"role": "user", "content": "Record Ada, 36, 1.7 m tall, likes blue, lives in London."}]
    for made, tool in as_tools():
        named = {"type": "function", "function": {"name": "record_person"}}
        done = client.chat.completions.create(model=uid, messages=question, tools=[tool], tool_choice=named,
                                              temperature=0, max_tokens=200)
        person = Person.model_validate_json(done.choices[0].message.tool_calls[0].function.arguments)
        assert 0 <= person.age <= 150 and 0.5 < person.height < 2.5, (made, person)
        for seed in range(3):  # sampled, not only greedy: every call still parses
            sampled = client.chat.completions.create(model=uid, messages=question, tools=[tool], tool_choice=named,
                                                     temperature=1.0, seed=seed, max_tokens=200)
            Person.model_validate_json(sampled.choices[0].message.tool_calls[0].function.arguments)
        pieces = [d.function.arguments or "" for chunk in client.chat.completions.create(
            model=uid, messages=question, tools=[tool], tool_choice=named, temperature=0, max_tokens=200,
            stream=True) for d in (chunk.choices[0].delta.tool_calls or [])]
        assert Person.model_validate_json("".join(pieces)) == person
    parsed = client.chat.completions.parse(model=uid, messages=question, tools=[as_tools()[1][1]],
                                           tool_choice="required", temperature=0, max_tokens=200)
    assert isinstance(parsed.choices[0].message.tool_calls[0].function.parsed_arguments, Person)


def test_pydantic_ais_default_output_tool_gives_back_the_model(server, uid):
    """pydantic-ai itself (its output tool, forced, with a nested model, an Enum and ranges) on SmolLM2."""
    pytest.importorskip("pydantic_ai")
    from pydantic_ai import Agent
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    from tests.support.pydantic_tools import Person

    model = OpenAIChatModel(uid, provider=OpenAIProvider(base_url=f"{server.url}/v1", api_key="none"))
    agent = Agent(model, output_type=Person, model_settings={"temperature": 0, "max_tokens": 200})
    result = agent.run_sync("Record Ada, 36, 1.7 m tall, likes blue, lives in London.")
    assert isinstance(result.output, Person) and 0 <= result.output.age <= 150
    assert [type(part).__name__ for part in result.all_messages()[1].parts] == ["ToolCallPart"]


@pytest.mark.parametrize("api", ["responses", "chat_completions"])
def test_the_openai_agents_sdk_runs_a_tool_and_gives_back_the_model(server, uid, api):
    """The OpenAI Agents SDK on both of its APIs: a streamed run whose first turn must call (the SDK then lets
    the model answer: its text is SmolLM2's), and an agent whose output type is the nested Person."""
    import asyncio

    agents = pytest.importorskip("agents")
    from openai import AsyncOpenAI

    from tests.support.pydantic_tools import Person

    agents.set_tracing_disabled(True)
    client = AsyncOpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
    kind = agents.OpenAIResponsesModel if api == "responses" else agents.OpenAIChatCompletionsModel
    model = kind(model=uid, openai_client=client)
    asked: list[str] = []

    @agents.function_tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        asked.append(city)
        return f"22 degrees and sunny in {city}"

    settings = agents.ModelSettings(tool_choice="required", temperature=0, max_tokens=120)
    weather = agents.Agent(name="weather", instructions="You answer questions about the weather.", model=model,
                           tools=[get_weather], model_settings=settings)

    recorder = agents.Agent(name="recorder", instructions="Record the person.", model=model, output_type=Person,
                            model_settings=agents.ModelSettings(temperature=0, max_tokens=200))

    async def run() -> tuple[list[str], object, object]:  # (one event loop: the client's connections live in it)
        ran = agents.Runner.run_streamed(weather, "What is the weather in Paris?", max_turns=4)
        items = [event.item.type async for event in ran.stream_events() if event.type == "run_item_stream_event"]
        recorded = await agents.Runner.run(recorder, "Record Ada, 36, 1.7 m tall, likes blue, lives in London.")
        return items, ran.final_output, recorded.final_output

    items, answer, person = asyncio.run(run())
    assert asked and asked[0] == "Paris" and items[:2] == ["tool_call_item", "tool_call_output_item"], items
    assert items[-1] == "message_output_item" and isinstance(answer, str)
    assert isinstance(person, Person) and 0 <= person.age <= 150


@pytest.mark.parametrize("mode", ["TOOLS", "JSON_SCHEMA", "RESPONSES_TOOLS"])
def test_instructors_structured_output_gives_back_the_model(server, uid, mode):
    """instructor itself (1.17, in its own venv) with the same Person: TOOLS mode (a forced call) and
    JSON_SCHEMA mode (`response_format`), RESPONSES_TOOLS (a forced call through /v1/responses), one attempt
    each, no re-asking."""
    from tests.support.instructor import ask_for_a_person
    from tests.support.pydantic_tools import Person

    got = ask_for_a_person(server.url, uid, mode)
    assert got["type"] == "Person"
    person = Person.model_validate(got["person"])
    assert 0 <= person.age <= 150 and 0.5 < person.height < 2.5


def test_an_auto_call_the_model_opens_always_parses(server, uid):
    """`auto`: the model decides whether to call; once it writes `<tool_call>`, the call is held to the tools'
    schemas to its end (sampled at temperature 1, where free calls broke 27 times in 200: bench/tool_calls.py).
    Of seeds 0-15, SmolLM2 calls with 0 and 12 (a seed makes an answer the same each run): those two, and three
    that answer in text. The 200 of bench/tool_calls.py per protocol find 0 malformed."""
    from tests.support.pydantic_tools import Person, as_tools

    client = sdk(server)
    question = [{"role": "user", "content": "Use the record_person tool now to save: Ada, 36, 1.7 m, blue, London."}]
    calls = 0
    for seed in (0, 1, 2, 3, 12):
        done = client.chat.completions.create(model=uid, messages=question, tools=[as_tools()[0][1]],
                                              tool_choice="auto", temperature=1.0, seed=seed, max_tokens=100)
        message = done.choices[0].message
        if message.tool_calls:
            Person.model_validate_json(message.tool_calls[0].function.arguments)
            assert done.choices[0].finish_reason == "tool_calls"
            calls += 1
        else:
            assert "<tool_call>" not in (message.content or ""), (seed, message.content)
    assert calls >= 1


def test_a_streamed_call_comes_as_openai_streams_it(server, uid):
    """The id and name first, then the arguments; finish_reason tool_calls; the SDK puts it together."""
    client = sdk(server)
    deltas, finish = [], None
    for chunk in client.chat.completions.create(model=uid, messages=QUESTION, tools=[WEATHER], stream=True,
                                                tool_choice="required", temperature=0, max_tokens=120):
        delta = chunk.choices[0].delta
        deltas += delta.tool_calls or []
        finish = chunk.choices[0].finish_reason or finish
    assert finish == "tool_calls"
    assert deltas[0].id and deltas[0].function.name == "get_weather" and deltas[0].function.arguments == ""
    valid_weather("".join(d.function.arguments or "" for d in deltas))
    with client.chat.completions.stream(model=uid, messages=QUESTION, tools=[WEATHER], tool_choice="required",
                                        temperature=0, max_tokens=120) as stream:
        final = stream.get_final_completion()
    valid_weather(final.choices[0].message.tool_calls[0].function.arguments)


def test_parallel_calls_and_auto(server, uid):
    client = sdk(server)
    done = client.chat.completions.create(model=uid, messages=QUESTION, tools=[WEATHER, TIME], temperature=0,
                                          tool_choice="required", parallel_tool_calls=True, max_tokens=200)
    assert len(done.choices[0].message.tool_calls) >= 1
    auto = client.chat.completions.create(model=uid, messages=QUESTION, tools=[WEATHER], max_tokens=60,
                                          temperature=0)
    choice = auto.choices[0]  # a small model may answer or call: either way, in the right field
    if choice.finish_reason == "tool_calls":
        valid_weather(choice.message.tool_calls[0].function.arguments)
    else:
        assert choice.message.content and "<tool_call>" not in choice.message.content


def test_xinference_client_chat_with_tools(server, uid):
    from xinference_client import RESTfulClient

    model = RESTfulClient(server.url).get_model(uid)
    done = model.chat(messages=QUESTION, tools=[WEATHER],
                      generate_config={"tool_choice": "required", "temperature": 0, "max_tokens": 120})
    assert done["choices"][0]["finish_reason"] == "tool_calls"
    valid_weather(done["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])


def test_a_template_that_renders_tools_gets_them(server: ServerProcess, gguf_path: Path):
    """A chat template that mentions `tools` renders them itself (here only their count: the prompt grows by
    a token or two), instead of the long system prompt a template without them gets."""
    template = ("{% if tools %}{{ tools | length }} tools\\n{% endif %}{% for m in messages %}"
                "{{ m['role'] }}: {{ m['content'] }}\\n{% endfor %}assistant:")
    client = Client(server.url)
    for name, spec_template in (("tools-template", template), ("plain-template", template.replace("tools", "x"))):
        client.register_model("LLM", gguf_spec(name, gguf_path, model_ability=["chat", "tools"], prompt_style=None,
                                               chat_template=spec_template))
    grown = {}
    try:
        for name in ("tools-template", "plain-template"):
            client.launch_model(model_name=name, context_length=1024)
            without = client.get_model(name).chat(QUESTION, generate_config={"max_tokens": 1})
            with_tools = client.get_model(name).chat(QUESTION, tools=[WEATHER], generate_config={"max_tokens": 1})
            grown[name] = with_tools["usage"]["prompt_tokens"] - without["usage"]["prompt_tokens"]
            client.terminate_model(name)
    finally:
        for name in ("tools-template", "plain-template"):
            client.unregister_model("LLM", name)
    assert 0 < grown["tools-template"] <= 4
    assert grown["plain-template"] > 40  # the tools written into the system prompt


FUNCTIONGEMMA_TEMPLATE = (
    "{% if tools %}<start_of_turn>developer\n{% for t in tools %}<start_function_declaration>declaration:"
    "{{ t['function']['name'] }}{description:<escape>{{ t['function']['description'] }}<escape>}"
    "<end_function_declaration>{% endfor %}<end_of_turn>\n{% endif %}"
    "{% for m in messages %}{% if m['role'] == 'tool' %}<start_function_response>response:{{ m['content'] }}"
    "<end_function_response>{% elif m.get('tool_calls') %}<start_of_turn>model\n{% for c in m['tool_calls'] %}"
    "<start_function_call>call:{{ c['function']['name'] }}{{ '{' }}{% for k, v in c['function']['arguments'].items() %}"
    "{{ k }}:<escape>{{ v }}<escape>{% if not loop.last %},{% endif %}{% endfor %}{{ '}' }}<end_function_call>"
    "{% endfor %}<end_of_turn>\n{% else %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' else 'user' }}\n"
    "{{ m['content'] }}<end_of_turn>\n{% endif %}{% endfor %}<start_of_turn>model\n")


@pytest.mark.parametrize("style", ["functiongemma", "gemma"])
def test_gemmas_call_syntax_is_forced_read_and_streamed(server: ServerProcess, gguf_path: Path, style: str):
    """Gemma 3 270M (the bundled GGUF) as FunctionGemma (its template shows the format) and as a Gemma 4 style
    model named by `tool_parser` (the tools go in the system prompt): a forced call comes back in OpenAI's
    fields, whole and streamed, with arguments held to the tool's schema; the follow-up is answered."""
    extra: dict = ({"chat_template": FUNCTIONGEMMA_TEMPLATE, "prompt_style": None} if style == "functiongemma"
                   else {"tool_parser": "gemma"})
    name = f"tools-{style}"
    admin = Client(server.url)
    admin.register_model("LLM", gguf_spec(name, gguf_path, model_ability=["chat", "tools"], **extra))
    try:
        admin.launch_model(model_name=name, context_length=1024)
        client = sdk(server)
        done = client.chat.completions.create(model=name, messages=QUESTION, tools=[WEATHER, TIME], temperature=0,
                                              tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                              max_tokens=60)
        assert done.choices[0].finish_reason == "tool_calls" and done.choices[0].message.content is None
        call = done.choices[0].message.tool_calls[0]
        assert call.function.name == "get_weather"
        valid_weather(call.function.arguments)
        deltas = []
        for chunk in client.chat.completions.create(model=name, messages=QUESTION, tools=[WEATHER, TIME],
                                                    tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                                    stream=True, temperature=0, max_tokens=60):
            deltas += chunk.choices[0].delta.tool_calls or []
        assert deltas[0].function.name == "get_weather"
        assert json.loads("".join(d.function.arguments or "" for d in deltas)) == json.loads(call.function.arguments)
        follow = QUESTION + [{"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                             {"role": "tool", "tool_call_id": call.id, "content": "21 degrees"}]
        answer = client.chat.completions.create(model=name, messages=follow, tools=[WEATHER], temperature=0,
                                                max_tokens=20)
        assert answer.choices[0].message.content or answer.choices[0].message.tool_calls
        patterned = {"type": "function", "function": {"name": "f", "parameters": {
            "type": "object", "properties": {"code": {"type": "string", "pattern": "^[A-Z]+$"}}}}}
        refused = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
            "model": name, "messages": QUESTION, "tools": [patterned], "tool_choice": "required"})
        assert refused.status_code == 400 and "'pattern' cannot be held to in Gemma's" in refused.json()["detail"]
    finally:
        admin.terminate_model(name)
        admin.unregister_model("LLM", name)


THINKING_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "<|im_start|>assistant\n{% if enable_thinking is not defined or enable_thinking %}<think>\n{% endif %}")


def thinker_spec(name: str) -> str:
    """SmolLM2 registered as a model that thinks (its template opens the thought unless told not to)."""
    from xitui.core.specs import bundled
    path = bundled._package_dir(bundled.SMOLLM_PACKAGE) / bundled.SMOLLM_FILE
    return json.dumps({
        "version": 2, "model_name": name, "model_lang": ["en"], "context_length": 2048,
        "model_ability": ["chat", "reasoning"], "chat_template": THINKING_TEMPLATE, "stop": ["<|im_end|>"],
        "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_135", "quantization": "q4_1",
                         "model_uri": str(path)}]})


@pytest.fixture(scope="module")
def thinker(server: ServerProcess) -> Iterator[str]:
    client = Client(server.url)
    with launched(client, "thinker", thinker_spec("thinker")):
        yield "thinker"


def test_a_thinking_models_reasoning_is_apart_from_its_answer(server, thinker):
    """The text inside the thought goes to reasoning_content, whole and streamed; with the template told
    not to open the thought (chat_template_kwargs), tags the model writes itself are split the same way.
    (A grammar makes this small model write a thought and an answer.)"""
    client = sdk(server)
    opened = 'root ::= [a-z ]{3,30} "</think>" [A-Za-z ]{3,30}'
    done = client.chat.completions.create(model=thinker, messages=QUESTION, max_tokens=80, temperature=0,
                                          extra_body={"grammar": opened})
    message = done.choices[0].message
    thought = message.model_extra["reasoning_content"]
    assert thought and "<think>" not in thought and "</think>" not in thought
    assert message.content and "think>" not in message.content
    streamed = {"reasoning_content": "", "content": ""}
    for chunk in client.chat.completions.create(model=thinker, messages=QUESTION, max_tokens=80, temperature=0,
                                                stream=True, extra_body={"grammar": opened}):
        delta = chunk.choices[0].delta
        streamed["content"] += delta.content or ""
        streamed["reasoning_content"] += (delta.model_extra or {}).get("reasoning_content") or ""
    assert streamed == {"reasoning_content": thought, "content": message.content}

    closed = 'root ::= "<think>" [a-z ]{3,20} "</think>" [A-Za-z ]{3,20}'
    done = client.chat.completions.create(model=thinker, messages=QUESTION, max_tokens=80, temperature=0,
                                          extra_body={"grammar": closed,
                                                      "chat_template_kwargs": {"enable_thinking": False}})
    message = done.choices[0].message
    assert message.model_extra["reasoning_content"] and message.content
    assert "think>" not in message.content + message.model_extra["reasoning_content"]
    refused = httpx.post(f"{server.url}/v1/chat/completions", timeout=60, json={
        "model": thinker, "messages": QUESTION, "chat_template_kwargs": {"messages": []}})
    assert refused.status_code == 400 and "chat_template_kwargs: 'messages'" in refused.json()["detail"]


def test_the_cli_shows_the_calls_a_model_makes(server, uid, tmp_path):
    import subprocess

    from tests.conftest import xitui_cmd

    path = tmp_path / "tools.json"
    path.write_text(json.dumps([WEATHER]))
    done = subprocess.run([*xitui_cmd(), "chat", "-u", uid, "-e", server.url, "--tools", str(path), "--tool-choice",
                           "get_weather", "--temperature", "0", "--no-save", "What is the weather in Paris?"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    line = done.stdout.strip()
    assert line.startswith("get_weather(") and line.endswith(")")
    valid_weather(line[len("get_weather("):-1])
    refused = subprocess.run([*xitui_cmd(), "chat", "-u", uid, "-e", server.url, "--tool-choice", "required", "x"],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1
    assert refused.stderr.strip() == "error: --tool-choice: give the tools to choose from with --tools"
    nameless = subprocess.run([*xitui_cmd(), "chat", "-u", uid, "-e", server.url, "--tools", '[{"type": "function"}]',
                               "x"], capture_output=True, text=True, timeout=60)
    assert nameless.returncode == 1 and nameless.stderr.strip() == (
        'error: --tools[0]: a tool is {"type": "function", "function": {"name", "description", "parameters"}}')


def test_through_langchain(server, uid):
    """An agent framework nobody here wrote: LangChain's ChatOpenAI binds a tool and asks for a structured
    answer against xitui's server."""
    import langchain_openai
    from pydantic import BaseModel, Field

    class City(BaseModel):
        """Where a place is."""

        city: str = Field(max_length=40)
        country: str = Field(max_length=40)

    def get_weather(city: str, unit: str) -> str:
        """The weather in a city, in celsius or fahrenheit."""
        return "21"

    chat = langchain_openai.ChatOpenAI(base_url=f"{server.url}/v1", api_key="none", model=uid, temperature=0,
                                       max_tokens=120, max_retries=0)
    called = chat.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
    assert called.tool_calls and called.tool_calls[0]["name"] == "get_weather"
    assert set(called.tool_calls[0]["args"]) == {"city", "unit"}
    where = chat.with_structured_output(City, method="json_schema").invoke("Where is the Eiffel tower?")
    assert isinstance(where, City)
