"""Answers of a given form on the transformers engine (llguidance): the 270M Gemma base model answers with
JSON of the schema, a grammar's words, a valid forced tool call. (A forced call in Gemma's own syntax is
tested on llama.cpp, tests/server/test_tools.py: the worker writes its grammar and reads its calls the same
way for either engine.)"""

from __future__ import annotations

import json

import pytest

from tests.server.conftest import ServerProcess
from tests.server.test_structured import Person, Primes, Sky
from tests.server.test_tools import WEATHER
from xitui.client import Client


@pytest.fixture(scope="module")
def server(torch_gemma: tuple[ServerProcess, str]) -> ServerProcess:
    return torch_gemma[0]


@pytest.fixture(scope="module")
def formed(torch_gemma: tuple[ServerProcess, str]) -> str:
    """The shared transformers Gemma (tests/server/conftest.py): a chat template, tools."""
    return torch_gemma[1]


@pytest.mark.parametrize("schema", [Person, Sky, Primes], ids=["nested", "enum", "array-bounds"])
def test_parse_returns_an_object_of_the_schema(server: ServerProcess, formed: str, schema) -> None:
    openai = pytest.importorskip("openai")
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
    done = sdk.chat.completions.parse(model=formed, messages=[{"role": "user", "content": "JSON please"}],
                                      response_format=schema, max_tokens=300, temperature=0)
    assert done.choices[0].finish_reason == "stop", done.choices[0].message.content
    assert isinstance(done.choices[0].message.parsed, schema)


def test_json_object_a_grammar_and_a_forced_tool_call(server: ServerProcess, formed: str) -> None:
    model = Client(server.url).get_model(formed)
    whole = model.generate("x", generate_config={"response_format": {"type": "json_object"}, "max_tokens": 200,
                                                 "temperature": 0})
    assert isinstance(json.loads(whole["choices"][0]["text"]), dict)
    answer = model.generate("x", generate_config={"grammar": 'root ::= " " ("yes" | "no")', "max_tokens": 10})
    assert answer["choices"][0]["text"] in (" yes", " no") and answer["choices"][0]["finish_reason"] == "stop"
    called = model.chat([{"role": "user", "content": "Weather in Paris?"}], tools=[WEATHER],
                        generate_config={"tool_choice": "required", "max_tokens": 200, "temperature": 0})
    call = called["choices"][0]["message"]["tool_calls"][0]["function"]
    arguments = json.loads(call["arguments"])
    assert call["name"] == "get_weather" and set(arguments) == {"city", "unit"}
    assert arguments["unit"] in ("celsius", "fahrenheit")
    # a pydantic model's tool ($defs for a nested model and an Enum, ranges) on this engine too (the SDK's
    # strict form; tests/server/test_tools.py sends both forms to llama.cpp)
    from tests.support.pydantic_tools import Person, as_tools

    called = model.chat([{"role": "user", "content": "Record Ada, 36."}], tools=[as_tools()[1][1]],
                        generate_config={"tool_choice": "required", "max_tokens": 200, "temperature": 0})
    Person.model_validate_json(called["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])


def test_a_thinking_model_reasons_freely_then_answers_in_the_form(server: ServerProcess, gemma_pt_dir) -> None:
    """As on llama.cpp (tests/server/test_structured.py): a thinking model's schema or forced call holds from
    the end of its thought. Gemma's spec here calls a thought what it writes after "Reasoning:" (the prompt
    opens it) up to its first full stop."""
    openai = pytest.importorskip("openai")
    from tests.server.conftest import TORCH_TEMPLATE
    from tests.server.test_structured import thinks_then_answers_in_the_form
    from tests.support.models import launched
    from tests.support.specs import pytorch_spec

    spec = json.loads(pytorch_spec("torch-thinks", gemma_pt_dir, version=2, chat_template=TORCH_TEMPLATE,
                                   model_ability=["chat", "tools", "reasoning"], reasoning_start_tag="Reasoning:",
                                   reasoning_end_tag="."))
    spec["model_specs"][0]["quantization"] = "none"
    del spec["model_specs"][0]["quantizations"]
    sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
    with launched(Client(server.url), "torch-thinks", json.dumps(spec), model_format="pytorch",
                  model_engine="transformers", n_parallel=2) as uid:
        # (streamed: on llama.cpp; the engine's pieces go through the same worker either way)
        assert set(thinks_then_answers_in_the_form(sdk, uid, WEATHER, streamed=False)) == {"city", "unit"}
