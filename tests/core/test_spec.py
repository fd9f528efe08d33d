"""Model spec parsing: both documented forms, the rules, and one-line errors for every broken variant."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import EXAMPLES
from xitui.core.errors import SpecError
from xitui.core.specs.spec import parse_embedding, parse_llm, parse_spec, size_key


def load(name: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / name).read_text())


DOC_LLM = load("custom-llama-2.json")
DOC_EMBEDDING = load("custom-bge-base-en.json")


def test_documented_llm_json_normalises_to_version_2() -> None:
    family = parse_llm(DOC_LLM)
    reg = family.registration()
    assert reg["version"] == 2
    assert reg["model_name"] == "custom-llama-2"
    # one spec per quantization, as Xinference 4.x stores them
    assert [(s["model_format"], s["quantization"]) for s in reg["model_specs"]] == [
        ("pytorch", "4-bit"),
        ("pytorch", "8-bit"),
        ("pytorch", "none"),
        ("ggmlv3", "q4_0"),
        ("ggmlv3", "q8_0"),
    ]
    assert reg["model_specs"][3]["model_file_name_template"] == "llama-2-7b.ggmlv3.{quantization}.bin"
    assert reg["model_specs"][0]["model_hub"] == "huggingface"
    assert reg["is_builtin"] is False


def test_version_2_equivalent_gives_the_same_registration_for_shared_specs() -> None:
    v1 = parse_llm(DOC_LLM).registration()
    v2 = parse_llm(load("custom-llama-2-v2.json")).registration()
    assert {k: v for k, v in v1.items() if k != "model_specs"} == {
        k: v for k, v in v2.items() if k != "model_specs"
    }
    assert all(spec in v1["model_specs"] for spec in v2["model_specs"])


def test_registration_parses_back_to_itself() -> None:
    for name in ("custom-llama-2.json", "custom-llama-2-chat.json"):
        reg = parse_llm(load(name)).registration()
        assert parse_llm(reg).registration() == reg


def test_documented_embedding_json_and_version_2() -> None:
    flat = parse_embedding(DOC_EMBEDDING).registration()
    v2 = parse_embedding(load("custom-bge-base-en-v2.json")).registration()
    assert flat == v2
    assert flat["dimensions"] == 768 and flat["max_tokens"] == 512
    assert flat["model_specs"] == [
        {
            "model_format": "pytorch",
            "model_id": "BAAI/bge-base-en",
            "model_uri": "file:///path/to/bge-base-en",
            "quantization": "none",
            "model_hub": "huggingface",
            "model_revision": None,
        }
    ]


def test_prompt_style_object_is_kept_and_fills_stop_words() -> None:
    family = parse_llm(load("custom-llama-2-chat.json"))
    assert family.prompt_style is not None
    assert family.prompt_style.style_name == "LLAMA2"
    assert family.prompt_style.system_prompt.startswith("<s>[INST] <<SYS>>\nYou are a helpful, respectful")
    assert family.stop_token_ids == [2]
    assert family.stop == []


@pytest.mark.parametrize("name", ["chatglm3", "CHATGLM3", "llama-2-chat", "Qwen"])
def test_prompt_style_string_names_a_style_or_a_family(name: str) -> None:
    spec = copy.deepcopy(DOC_LLM)
    spec["model_ability"] = ["chat"]
    spec["model_family"] = "other"
    spec["prompt_style"] = name
    style = parse_llm(spec).prompt_style
    assert style is not None
    expected = {"chatglm3": "CHATGLM3", "llama-2-chat": "LLAMA2", "qwen": "QWEN"}[name.lower()]
    assert style.style_name == expected


def test_builtin_family_brings_its_prompt_style() -> None:
    spec = copy.deepcopy(DOC_LLM)
    spec["model_family"] = "llama-2-chat"
    spec["model_ability"] = ["chat"]
    family = parse_llm(spec)
    # the family's style is what the model reads when its files have no template (the model's own comes first)
    assert family.prompt_style is None
    assert family.family_style is not None and family.family_style.style_name == "LLAMA2"
    assert family.stop == ["</s>"]
    assert "family_style" not in family.registration()


def test_gguf_file_uri_needs_no_template(tmp_path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF")
    spec = {
        "version": 2,
        "model_name": "local-gguf",
        "model_ability": ["generate"],
        "model_specs": [
            {
                "model_format": "ggufv2",
                "model_size_in_billions": 0.27,
                "quantization": "Q4_K_M",
                "model_uri": f"file://{model}",
            }
        ],
    }
    family = parse_llm(spec)
    assert family.model_specs[0].model_size_in_billions == "0_27"
    assert family.model_family == "other"


def test_sizes_compare_in_any_spelling() -> None:
    assert size_key(7) == size_key("7") == size_key(7.0) == "7"
    assert size_key(0.5) == size_key("0_5") == size_key("0.5") == "0_5"


def test_model_type_is_checked() -> None:
    with pytest.raises(SpecError, match="model_type: unsupported model type 'image'"):
        parse_spec("image", DOC_LLM)


def _mutate(base: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    spec = copy.deepcopy(base)
    target = spec
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return spec


_DELETE = object()

# (description, model type, spec, the one-line problem expected)
BROKEN: list[tuple[str, str, Any, str]] = [
    ("not json", "LLM", "{", "spec: not valid JSON (line 1 column 2"),
    ("a list", "LLM", "[]", "spec: must be a JSON object"),
    ("no name", "LLM", _mutate(DOC_LLM, ["model_name"], _DELETE), "model_name: required"),
    ("empty name", "LLM", _mutate(DOC_LLM, ["model_name"], ""), "model_name: must not be empty"),
    (
        "name with space",
        "LLM",
        _mutate(DOC_LLM, ["model_name"], "my model"),
        "model_name: must start with a letter",
    ),
    (
        "name starting with dash",
        "LLM",
        _mutate(DOC_LLM, ["model_name"], "-x"),
        "model_name: must start with a letter",
    ),
    (
        "name with slash",
        "LLM",
        _mutate(DOC_LLM, ["model_name"], "a/b"),
        "model_name: must start with a letter",
    ),
    (
        "builtin name",
        "LLM",
        _mutate(DOC_LLM, ["model_name"], "llama-2-chat"),
        "model_name: 'llama-2-chat' is a builtin",
    ),
    (
        "builtin name any case",
        "LLM",
        _mutate(DOC_LLM, ["model_name"], "Llama-2"),
        "model_name: 'Llama-2' is a builtin",
    ),
    ("name is a number", "LLM", _mutate(DOC_LLM, ["model_name"], 7), "model_name: must be a string"),
    ("bad version", "LLM", _mutate(DOC_LLM, ["version"], 3), "version: must be 1 or 2"),
    (
        "context length zero",
        "LLM",
        _mutate(DOC_LLM, ["context_length"], 0),
        "context_length: must be between 1",
    ),
    (
        "context length text",
        "LLM",
        _mutate(DOC_LLM, ["context_length"], "2048"),
        "context_length: must be an integer",
    ),
    (
        "context length bool",
        "LLM",
        _mutate(DOC_LLM, ["context_length"], True),
        "context_length: must be an integer",
    ),
    (
        "unknown ability",
        "LLM",
        _mutate(DOC_LLM, ["model_ability"], ["generate", "fly"]),
        "model_ability[1]: 'fly' is not",
    ),
    (
        "no generate or chat",
        "LLM",
        _mutate(DOC_LLM, ["model_ability"], ["tools"]),
        "model_ability: must include",
    ),
    ("empty abilities", "LLM", _mutate(DOC_LLM, ["model_ability"], []), "model_ability: must not be empty"),
    (
        "a thought's end tag that holds a stop word",  # (the answer stops inside it: the thought never ends)
        "LLM",
        {**DOC_LLM, "model_ability": ["chat", "reasoning"], "reasoning_end_tag": "<|im_end|>",
         "stop": ["<|im_end|>"]},
        "reasoning_end_tag: '<|im_end|>' holds the stop word '<|im_end|>'",
    ),
    ("lang not list", "LLM", _mutate(DOC_LLM, ["model_lang"], "en"), "model_lang: must be a list of strings"),
    (
        "unknown family",
        "LLM",
        _mutate(DOC_LLM, ["model_family"], "llama-9"),
        "model_family: 'llama-9' is not a builtin",
    ),
    ("no specs", "LLM", _mutate(DOC_LLM, ["model_specs"], _DELETE), "model_specs: required"),
    ("empty specs", "LLM", _mutate(DOC_LLM, ["model_specs"], []), "model_specs: must be a non-empty list"),
    (
        "spec not object",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0], "pytorch"),
        "model_specs[0]: must be an object",
    ),
    (
        "unknown format",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "model_format"], "onnx"),
        "model_specs[0].model_format: 'onnx' is not supported",
    ),
    (
        "missing format",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "model_format"], _DELETE),
        "model_specs[0].model_format: required",
    ),
    (
        "bad pytorch quantization",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "quantizations"], ["2-bit"]),
        "model_specs[0].quantizations[0]: '2-bit' is not a pytorch quantization",
    ),
    (
        "empty quantizations",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "quantizations"], []),
        "model_specs[0].quantizations: must not be empty",
    ),
    (
        "v1 with quantization",
        "LLM",
        _mutate(
            _mutate(DOC_LLM, ["model_specs", 0, "quantizations"], _DELETE),
            ["model_specs", 0, "quantization"],
            "none",
        ),
        "model_specs[0].quantizations: required in version 1",
    ),
    (
        "v2 with quantizations",
        "LLM",
        _mutate(load("custom-llama-2-v2.json"), ["model_specs", 0, "quantization"], _DELETE),
        "model_specs[0].quantization: required",
    ),
    (
        "gguf quantization with space",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 1, "quantizations"], ["q4 0"]),
        "model_specs[1].quantizations[0]: 'q4 0' is not a valid quantization",
    ),
    (
        "size missing",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "model_size_in_billions"], _DELETE),
        "model_specs[0].model_size_in_billions: required",
    ),
    (
        "size negative",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "model_size_in_billions"], -7),
        "model_specs[0].model_size_in_billions: must be a positive number",
    ),
    (
        "size words",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "model_size_in_billions"], "seven"),
        "model_specs[0].model_size_in_billions: must be a positive number",
    ),
    (
        "ggml without template",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 1, "model_file_name_template"], _DELETE),
        "model_specs[1].model_file_name_template: required for ggmlv3",
    ),
    (
        "gguf without template",
        "LLM",
        _mutate(
            _mutate(DOC_LLM, ["model_specs", 1, "model_format"], "ggufv2"),
            ["model_specs", 1, "model_file_name_template"],
            _DELETE,
        ),
        "model_specs[1].model_file_name_template: required for ggufv2",
    ),
    (
        "template with other field",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 1, "model_file_name_template"], "{size}.bin"),
        "model_specs[1].model_file_name_template: may only use the {quantization} placeholder",
    ),
    (
        "template broken braces",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 1, "model_file_name_template"], "x{.bin"),
        "model_specs[1].model_file_name_template: not a valid template",
    ),
    (
        "template with path",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 1, "model_file_name_template"], "../../etc/{quantization}"),
        "model_specs[1].model_file_name_template: must name a file",
    ),
    (
        "relative uri",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "model_uri"], "models/llama"),
        "model_specs[0].model_uri: must be an absolute path",
    ),
    (
        "http uri",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "model_uri"], "https://example.com/llama"),
        "model_specs[0].model_uri: must be file:///absolute/path",
    ),
    (
        "pytorch uri is a file",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "model_uri"], "file:///etc/hostname"),
        "model_specs[0].model_uri: must be a directory, not a file",
    ),
    (
        "neither id nor uri",
        "LLM",
        _mutate(
            _mutate(DOC_LLM, ["model_specs", 0, "model_id"], _DELETE),
            ["model_specs", 0, "model_uri"],
            _DELETE,
        ),
        "model_specs[0]: needs model_id (to download) or model_uri",
    ),
    (
        "model id without org",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "model_id"], "llama"),
        "model_specs[0].model_id: must look like 'organisation/repository'",
    ),
    (
        "unknown hub",
        "LLM",
        _mutate(DOC_LLM, ["model_specs", 0, "model_hub"], "github"),
        "model_specs[0].model_hub: must be one of",
    ),
    (
        "unknown prompt style",
        "LLM",
        _mutate(DOC_LLM, ["prompt_style"], "NOPE"),
        "prompt_style: 'NOPE' is neither",
    ),
    (
        "prompt style without name",
        "LLM",
        _mutate(DOC_LLM, ["prompt_style"], {"roles": ["a", "b"]}),
        "prompt_style.style_name: required",
    ),
    (
        "prompt style three roles",
        "LLM",
        _mutate(DOC_LLM, ["prompt_style"], {"style_name": "QWEN", "roles": ["a", "b", "c"]}),
        "prompt_style.roles: must hold exactly two roles",
    ),
    (
        "prompt style custom name no roles",
        "LLM",
        _mutate(DOC_LLM, ["prompt_style"], {"style_name": "MINE"}),
        "prompt_style.style_name: 'MINE' is not a style xitui can render",
    ),
    (
        "prompt style bad stop ids",
        "LLM",
        _mutate(DOC_LLM, ["prompt_style"], {"style_name": "QWEN", "stop_token_ids": ["2"]}),
        "prompt_style.stop_token_ids: must be a list of non-negative integers",
    ),
    (
        "bad chat template",
        "LLM",
        _mutate(DOC_LLM, ["chat_template"], "{% for m in messages %}"),
        "chat_template: line 1:",
    ),
    ("stop not list", "LLM", _mutate(DOC_LLM, ["stop"], "</s>"), "stop: must be a list of strings"),
    (
        "stop ids negative",
        "LLM",
        _mutate(DOC_LLM, ["stop_token_ids"], [-1]),
        "stop_token_ids: must be a list of non-negative",
    ),
    (
        "embedding no dimensions",
        "embedding",
        _mutate(DOC_EMBEDDING, ["dimensions"], _DELETE),
        "dimensions: required",
    ),
    (
        "embedding zero dimensions",
        "embedding",
        _mutate(DOC_EMBEDDING, ["dimensions"], 0),
        "dimensions: must be between 1",
    ),
    (
        "embedding max tokens text",
        "embedding",
        _mutate(DOC_EMBEDDING, ["max_tokens"], "512"),
        "max_tokens: must be an integer",
    ),
    (
        "embedding relative uri",
        "embedding",
        _mutate(DOC_EMBEDDING, ["model_uri"], "bge"),
        "model_uri: must be an absolute path",
    ),
    (
        "embedding builtin name",
        "embedding",
        _mutate(DOC_EMBEDDING, ["model_name"], "bge-base-en"),
        "model_name: 'bge-base-en' is a builtin",
    ),
    (
        "embedding gguf",
        "embedding",
        _mutate(DOC_EMBEDDING, ["model_format"], "ggufv2"),
        "model_format: embedding models use 'pytorch'",
    ),
    (
        "embedding neither id nor uri",
        "embedding",
        _mutate(_mutate(DOC_EMBEDDING, ["model_id"], _DELETE), ["model_uri"], _DELETE),
        "spec: needs model_id",
    ),
    (
        "embedding v2 empty specs",
        "embedding",
        _mutate(load("custom-bge-base-en-v2.json"), ["model_specs"], []),
        "model_specs: must be a non-empty list",
    ),
    (
        "embedding v2 quantized",
        "embedding",
        _mutate(load("custom-bge-base-en-v2.json"), ["model_specs", 0, "quantization"], "8-bit"),
        "model_specs[0].quantization: embedding models use 'none'",
    ),
]


@pytest.mark.parametrize(
    ("model_type", "spec", "expected"), [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN]
)
def test_broken_spec_names_field_and_rule(model_type: str, spec: Any, expected: str) -> None:
    source = spec if isinstance(spec, str) else json.dumps(spec)
    with pytest.raises(SpecError) as info:
        parse_spec(model_type, source)
    assert any(p.startswith(expected) for p in info.value.problems), info.value.problems
    assert all("\n" not in p for p in info.value.problems)


def test_every_problem_is_reported_at_once() -> None:
    spec = _mutate(_mutate(DOC_LLM, ["model_name"], "bad name"), ["context_length"], -1)
    with pytest.raises(SpecError) as info:
        parse_llm(spec)
    assert len(info.value.problems) == 2


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
spec_keys = st.sampled_from(
    [
        "version",
        "model_name",
        "context_length",
        "model_lang",
        "model_ability",
        "model_family",
        "model_specs",
        "prompt_style",
        "chat_template",
        "stop",
        "stop_token_ids",
        "model_format",
        "model_size_in_billions",
        "quantizations",
        "quantization",
        "model_id",
        "model_uri",
        "model_file_name_template",
        "dimensions",
        "max_tokens",
        "language",
        "style_name",
        "roles",
    ]
)
spec_like = st.recursive(
    json_values,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(spec_keys, children, max_size=8),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=spec_like, model_type=st.sampled_from(["LLM", "embedding"]))
def test_fuzz_only_spec_errors_escape(data: Any, model_type: str) -> None:
    for source in (data, json.dumps(data)):
        try:
            parse_spec(model_type, source)
        except SpecError as exc:
            assert exc.problems and all(isinstance(p, str) and "\n" not in p for p in exc.problems)


@settings(max_examples=200, deadline=None)
@given(
    mutation=st.tuples(
        st.sampled_from(["model_specs", "prompt_style", "model_name", "context_length"]), json_values
    )
)
def test_fuzz_mutations_of_the_documented_spec(mutation: tuple[str, Any]) -> None:
    key, value = mutation
    spec = _mutate(DOC_LLM, [key], value)
    try:
        parse_llm(json.dumps(spec))
    except SpecError as exc:
        assert all("\n" not in p for p in exc.problems)
