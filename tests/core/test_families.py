"""The family catalog of today (Xinference 4's builtin families, as facts), the abilities Xinference takes, what a
family brings to a spec, and the warnings about specs that are legal but likely wrong."""

from __future__ import annotations

import copy
import json

import pytest

from tests.core.test_spec import DOC_LLM
from xitui.client.client import xinference_spec
from xitui.core.chat_format.prompts import conversation_prompt
from xitui.core.errors import SpecError
from xitui.core.specs import catalog, registry
from xitui.core.specs.advice import spec_advice
from xitui.core.specs.spec import parse_llm

MODEL_TEMPLATE = "{% for m in messages %}<<{{ m.role }}>>{{ m.content }}{% endfor %}<<assistant>>"


def gguf_spec(**fields: object) -> dict:
    spec = {"version": 2, "model_name": "mine", "model_lang": ["en"], "model_ability": ["chat"],
            "context_length": 4096,
            "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": 1, "quantization": "Q4_K_M",
                             "model_uri": "/models/mine.gguf"}]}
    spec.update(fields)
    return spec


@pytest.mark.parametrize("family", ["qwen3", "deepseek-r1", "gpt-oss", "gemma-3-it", "llama-3.3-instruct",
                                    "Qwen3-Thinking", "glm-4.5", "llama-2-chat", "chatglm3"])
def test_todays_families_and_the_documented_ones_register(family: str) -> None:
    parsed = parse_llm(gguf_spec(model_family=family))
    assert parsed.model_family == family


def test_the_catalog_says_where_its_facts_come_from_and_holds_them() -> None:
    assert catalog.source().startswith("xinference 4.1.0")
    qwen3 = catalog.raw_llms()["qwen3"]
    assert qwen3["tool_parser"] == "qwen" and qwen3["reasoning_start_tag"] == "<think>"
    assert {"chat", "tools", "reasoning", "hybrid"} <= set(qwen3["model_ability"])
    assert qwen3["context_length"] == 40960 and qwen3["architectures"] == ["Qwen3ForCausalLM"]
    assert len(catalog.raw_llms()) >= 171
    # every family with weights xitui can fetch parses as a builtin registration
    assert len(registry.builtin_llms()) >= 160


def test_an_unknown_family_is_refused_locally_but_left_to_a_real_xinference() -> None:
    spec = gguf_spec(model_family="made-up-family")
    with pytest.raises(SpecError, match="model_family: 'made-up-family' is not a builtin family"):
        parse_llm(spec)
    sent = json.loads(xinference_spec("LLM", json.dumps(spec)))
    assert sent["model_family"] == "made-up-family" and "prompt_style" not in sent


@pytest.mark.parametrize("abilities", [["chat", "embed"], ["chat", "reasoning", "hybrid"], ["chat", "audio"],
                                       ["chat", "vision", "audio", "omni"]])
def test_xinferences_abilities_are_taken(abilities: list[str]) -> None:
    spec = gguf_spec(model_ability=abilities)
    spec["model_specs"][0]["multimodal_projectors"] = ["mmproj-f16.gguf"]  # (vision on GGUF needs one)
    assert parse_llm(spec).model_ability == abilities


def test_an_ability_nobody_knows_is_still_refused() -> None:
    with pytest.raises(SpecError, match=r"model_ability\[1\]: 'telepathy' is not an LLM ability"):
        parse_llm(gguf_spec(model_ability=["chat", "telepathy"]))


def test_the_models_own_template_comes_before_its_familys_style() -> None:
    parsed = parse_llm(gguf_spec(model_family="qwen3"))
    assert parsed.prompt_style is None and parsed.family_style is not None
    messages = [{"role": "user", "content": "hi"}]
    assert conversation_prompt(parsed, MODEL_TEMPLATE, messages) == "<<user>>hi<<assistant>>"
    # a model file without a template: the family's convention (ChatML for qwen3)
    assert "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n" in conversation_prompt(parsed, None, messages)
    # and the family's stop words, as the spec named none
    assert "<|im_end|>" in (parsed.stop or [])


def test_a_tool_parser_xinference_knows_registers_and_one_nobody_knows_does_not() -> None:
    assert parse_llm(gguf_spec(model_family="glm-5", tool_parser="glm5")).tool_parser == "glm5"
    with pytest.raises(SpecError, match="tool_parser: 'nope' is not a tool parser"):
        parse_llm(gguf_spec(tool_parser="nope"))


def test_advice_for_a_missing_family_and_the_seeds_family_ability_mismatch() -> None:
    missing = spec_advice("LLM", gguf_spec())
    assert len(missing) == 1 and missing[0].startswith("model_family: not given, so 'other'")
    seed = copy.deepcopy(DOC_LLM)
    seed["model_family"] = "llama-2-chat"  # a chat family declared generate-only: what the seed warns against
    assert spec_advice("LLM", seed) == [
        "model_ability: llama-2-chat is a chat family but the spec says generate only: its models answer "
        "turns, not raw text; add 'chat'"]
    base = gguf_spec(model_family="llama-2")  # the reverse: a base family declared chat, with no chat format
    assert spec_advice("LLM", base)[0].startswith("model_ability: llama-2 is a base family")
    assert spec_advice("LLM", {**base, "prompt_style": "LLAMA2"}) == []
    assert spec_advice("LLM", gguf_spec(model_family="glm-5", tool_parser="glm5"))[0].startswith(
        "tool_parser: xitui does not read 'glm5' calls yet")
    assert spec_advice("LLM", gguf_spec(model_family="qwen3")) == []
    assert spec_advice("embedding", {"model_name": "x"}) == []


@pytest.mark.parametrize("junk", ["", "[]", "{", '{"model_family": 3, "model_ability": "chat"}', "null"])
def test_advice_never_fails_on_what_does_not_parse(junk: str) -> None:
    assert isinstance(spec_advice("LLM", junk), list)
