"""Probes of real model files: the exact values read from headers and configs, without loading weights."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import xitui_cmd
from tests.fake_hub import FakeHub
from tests.model_files import minilm_dir, reranker_dir
from xitui.core.model_files.inspect import InspectError, inspect_source
from xitui.core.model_files.inspect.gguf_header import FILE_TYPES, GGUFError, read_header
from xitui.core.model_files.inspect.naming import file_name_template, model_name_from, quantization_in, size_in_billions
from xitui.core.specs.spec import parse_spec


def test_gguf_header_of_the_bundled_model(gguf_path: Path) -> None:
    header = read_header(gguf_path)
    assert header.architecture == "gemma3"
    assert header.arch("context_length") == 32768
    assert header.parameter_count == 268_098_176
    assert header.quantization == "Q4_K_M"
    assert header.get("tokenizer.chat_template") is None
    assert header.tokens == {1: "<eos>", 2: "<bos>"}


def test_gguf_probe_proposes_a_valid_spec(gguf_path: Path) -> None:
    found = inspect_source(str(gguf_path))
    assert (found.kind, found.model_type) == ("gguf", "LLM")
    spec = found.spec()
    entry = spec["model_specs"][0]
    assert entry == {"model_format": "ggufv2", "model_size_in_billions": "0_27", "quantization": "q4_k_m",
                     "model_file_name_template": "gemma-3-270m-{quantization}.gguf",
                     "model_uri": f"file://{gguf_path.parent}"}
    assert spec["model_name"] == "gemma-3-270m" and found.origin("model_name") == "the file name"
    assert spec["context_length"] == 32768 and found.origin("context_length") == "GGUF metadata"
    assert spec["model_family"] == "gemma-3-it" and spec["prompt_style"].upper() == "GEMMA"
    assert "chat_template" not in spec  # the file has none
    assert spec["stop_token_ids"] == [1] and spec["stop"][:2] == ["<eos>", "<end_of_turn>"]
    assert parse_spec("LLM", spec).model_name == "gemma-3-270m"


def test_a_llama_that_speaks_chatml_is_not_proposed_a_llama_3_family(small_gguf: Path) -> None:
    """SmolLM2 is a llama whose own template writes ChatML: a Llama 3 family would bring Llama 3's tool parser
    and stop words to it. None of the llama families write ChatML, so the proposal is `other`, saying why."""
    found = inspect_source(str(small_gguf))
    assert found.facts["families"][0] == "llama-3.1-instruct"  # what the architecture alone suggests
    spec = found.spec()
    assert spec["model_family"] == "other" and "ChatML" in (found.origin("model_family") or "")
    assert "<|im_start|>" in spec["chat_template"] and "tool_parser" not in spec
    assert parse_spec("LLM", spec).model_name


def test_a_folder_of_two_quantizations_derives_the_template(gguf_path: Path, tmp_path: Path) -> None:
    for name in ("Gemma-3-270M-Q4_K_M.gguf", "Gemma-3-270M-Q8_0.gguf", "notes.txt"):
        os.link(gguf_path, tmp_path / name)
    found = inspect_source(str(tmp_path))
    assert found.gguf_files == ["Gemma-3-270M-Q4_K_M.gguf", "Gemma-3-270M-Q8_0.gguf"]
    spec = found.spec()
    assert [s["quantization"] for s in spec["model_specs"]] == ["Q4_K_M", "Q8_0"]
    assert {s["model_file_name_template"] for s in spec["model_specs"]} == {"Gemma-3-270M-{quantization}.gguf"}
    picked = inspect_source(str(tmp_path), gguf_file="Gemma-3-270M-Q8_0.gguf")
    assert [s["quantization"] for s in picked.spec()["model_specs"]] == ["Q8_0", "Q4_K_M"]
    parse_spec("LLM", spec)


def test_pytorch_probe(gemma_pt_dir: Path) -> None:
    found = inspect_source(str(gemma_pt_dir))
    assert (found.kind, found.model_type) == ("pytorch", "LLM")
    assert found.facts["architecture"] == "gemma3_text" and found.facts["parameter_count"] == 268_098_176
    spec = found.spec()
    assert spec["context_length"] == 32768 and found.origin("context_length") == "config.json"
    assert spec["model_specs"] == [{"model_format": "pytorch", "model_size_in_billions": "0_27",
                                    "quantization": "none", "model_uri": f"file://{gemma_pt_dir}"}]
    assert "chat_template" not in spec and spec["stop_token_ids"] == [1]
    assert found.origin("stop_token_ids") == "generation_config.json"
    parse_spec("LLM", spec)


def test_sentence_transformers_probe() -> None:
    found = inspect_source(str(minilm_dir()))
    assert (found.kind, found.model_type) == ("sentence-transformers", "embedding")
    spec = found.spec()
    assert spec["dimensions"] == 384 and found.origin("dimensions") == "1_Pooling/config.json"
    assert spec["max_tokens"] == 256 and found.origin("max_tokens") == "sentence_bert_config.json"
    assert spec["model_specs"][0]["model_id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert spec["model_name"] == "all-MiniLM-L6-v2-custom"  # the plain name is a builtin model
    parse_spec("embedding", spec)


@pytest.mark.slow  # (its cross-encoder is trained for the tests: 22 s on a fresh machine)
def test_cross_encoder_probe(tmp_path: Path) -> None:
    """A cross-encoder is a rerank model, whether sentence-transformers saved it (its config says
    CrossEncoder) or it is a bare one-score sequence classifier (older rerankers); a classifier with several
    labels is not one."""
    found = inspect_source(str(reranker_dir()))
    assert (found.kind, found.model_type) == ("cross-encoder", "rerank")
    spec = found.spec()
    assert spec["max_tokens"] == 512 and found.origin("max_tokens") == "config.json"
    assert spec["type"] == "normal" and "dimensions" not in spec
    assert "model_id" not in spec["model_specs"][0]  # its README links the blog, which is no model id
    assert found.facts["parameter_count"] == 22_713_601
    assert parse_spec("rerank", spec).model_name == "tiny-reranker"
    bare = tmp_path / "bge-reranker-small"
    bare.mkdir()
    config = json.loads((reranker_dir() / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps(config))
    os.symlink(reranker_dir() / "model.safetensors", bare / "model.safetensors")
    assert inspect_source(str(bare)).model_type == "rerank"
    config["id2label"] = {"0": "negative", "1": "positive"}
    (bare / "config.json").write_text(json.dumps(config))
    assert inspect_source(str(bare)).model_type != "rerank"


def test_file_type_names_match_the_gguf_package() -> None:
    from gguf import LlamaFileType

    for value, name in FILE_TYPES.items():
        assert LlamaFileType(value).name.removeprefix("MOSTLY_").removeprefix("ALL_") == name


@pytest.mark.parametrize(("name", "expected"), [
    ("gemma-3-270m-q4_k_m.gguf", ("gemma-3-270m-", "q4_k_m", ".gguf")),
    ("Qwen2.5-7B-Instruct-Q5_K_M.gguf", ("Qwen2.5-7B-Instruct-", "Q5_K_M", ".gguf")),
    ("llama-2-7b.Q4_0.gguf", ("llama-2-7b.", "Q4_0", ".gguf")),
    ("model-IQ4_XS-00001-of-00002.gguf", ("model-", "IQ4_XS", "-00001-of-00002.gguf")),
    ("phi-3-mini-4k-instruct-fp16.gguf", None),
    ("ggml-model-f16.gguf", ("ggml-model-", "f16", ".gguf")),
])
def test_quantization_in_file_names(name: str, expected: tuple[str, str, str] | None) -> None:
    assert quantization_in(name) == expected


def test_names_and_sizes() -> None:
    assert model_name_from("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen2-5-0-5B-Instruct"
    assert model_name_from("/models/llama-2-chat/") == "llama-2-chat-custom"
    assert file_name_template(["a-Q4_0.gguf", "b-Q8_0.gguf"]) is None
    assert size_in_billions(268_098_176) == "0_27" and size_in_billions(6_738_415_616) == "6_7"
    assert size_in_billions(7_000_000_000) == 7 and size_in_billions(70_553_706_496) == 71


def test_broken_sources_are_one_clear_error(gguf_path: Path, tmp_path: Path) -> None:
    (tmp_path / "fake.gguf").write_bytes(b"not a model" * 100)
    with pytest.raises(GGUFError, match="not a GGUF file"):
        inspect_source(str(tmp_path / "fake.gguf"))
    cut = tmp_path / "cut" / "cut-q4_k_m.gguf"
    cut.parent.mkdir()
    with open(gguf_path, "rb") as src:
        cut.write_bytes(src.read(200_000))  # inside the token list
    with pytest.raises(GGUFError, match="cut short"):
        inspect_source(str(cut))
    with pytest.raises(InspectError, match="no such file"):
        inspect_source(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InspectError, match="no .gguf file"):
        inspect_source(str(tmp_path / "empty"))


def test_hub_probe_fetches_only_small_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Hub id: the repository's file list and config files, never its weights."""
    hub = FakeHub({"sentence-transformers/all-MiniLM-L6-v2": minilm_dir()})
    try:
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
        found = inspect_source("sentence-transformers/all-MiniLM-L6-v2")
        assert found.model_type == "embedding" and found.value("dimensions") == 384
        assert found.value("model_id") == "sentence-transformers/all-MiniLM-L6-v2"
        assert "model_uri" not in found.spec()["model_specs"][0]
        fetched = [r for r in hub.requests if r.startswith("GET") and "/resolve/" in r]
        assert fetched and not any(r.endswith(".safetensors") for r in fetched)
        missing = inspect_source("nobody/nothing")
        assert missing.notes and "not found" in missing.notes[0]
    finally:
        hub.stop()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = inspect_source("sentence-transformers/all-MiniLM-L6-v2")
    assert offline.notes and offline.notes[0].startswith("offline")
    assert offline.value("model_name") == "all-MiniLM-L6-v2-custom"


def test_inspect_command(gguf_path: Path) -> None:
    """`xitui inspect` prints the proposed spec as JSON, which `xitui validate` accepts; no server needed."""
    proc = subprocess.run([*xitui_cmd(), "inspect", str(gguf_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    spec = json.loads(proc.stdout)
    assert spec["model_name"] == "gemma-3-270m"
    proc = subprocess.run([*xitui_cmd(), "inspect", "/nowhere/x.gguf"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("error:") and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("template", "abilities", "fields"), [
    ("{% for m in messages %}{{ m.content }}{% endfor %}", ["generate", "chat"], {}),
    ("{% if tools %}{{ tools | tojson }}<tool_call>{% endif %}{% for m in messages %}{% endfor %}",
     ["generate", "chat", "tools"], {"tool_parser": "hermes"}),
    ("{% if tools %}[AVAILABLE_TOOLS]{% endif %}[TOOL_CALLS]", ["generate", "chat", "tools"],
     {"tool_parser": "mistral"}),
    ("<|im_start|>assistant\n<think>\n", ["generate", "chat", "reasoning"],
     {"reasoning_start_tag": "<think>", "reasoning_end_tag": "</think>"}),
])
def test_a_chat_template_proposes_the_tools_and_reasoning_it_shows(template, abilities, fields) -> None:
    """What inspect (and the wizard) propose from a model's own template, and the spec it prints."""
    from xitui.core.model_files.inspect.local import _propose_abilities
    from xitui.core.model_files.inspect.result import Inspection
    from xitui.core.specs.spec import parse_llm

    found = Inspection("model.gguf", "gguf", "LLM")
    found.propose("chat_template", template, "GGUF metadata")
    found.propose("model_name", "m", "file name")
    found.propose("model_specs", None, "")
    _propose_abilities(found)
    assert found.value("model_ability") == abilities
    spec = found.spec()
    assert {k: spec[k] for k in fields} == fields
    assert not {"tool_parser", "reasoning_start_tag"} - set(fields) & set(spec)
    spec["model_specs"] = [{"model_format": "ggufv2", "model_size_in_billions": 1, "quantization": "q4_0",
                            "model_uri": "/m.gguf"}]
    parsed = parse_llm(spec)  # what it proposes registers
    assert parsed.model_ability == abilities and parsed.tool_parser == fields.get("tool_parser")


def write_gguf(path: Path, architecture: str, fields: dict[str, object]) -> Path:
    """A small real GGUF: the header these probes read, and one tensor."""
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(str(path), architecture)
    for key, value in fields.items():
        if isinstance(value, bool):
            writer.add_bool(key, value)
        elif isinstance(value, int):
            writer.add_uint32(key, value)
        else:
            writer.add_string(key, str(value))
    writer.add_tensor("token_embd.weight", np.zeros((4, 64), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


GEMMA_TEMPLATE = ("{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
                  "{% endfor %}<start_of_turn>model\n")


def vision_folder(tmp_path: Path, *projectors: tuple[str, int]) -> Path:
    write_gguf(tmp_path / "tiny-vlm-Q8_0.gguf", "gemma3", {"gemma3.embedding_length": 64,
                                                            "gemma3.context_length": 2048,
                                                            "tokenizer.chat_template": GEMMA_TEMPLATE})
    for name, width in projectors:
        write_gguf(tmp_path / name, "clip", {"general.type": "mmproj", "clip.has_vision_encoder": True,
                                             "clip.vision.projection_dim": width})
    return tmp_path


def test_the_projector_beside_a_gguf_is_proposed_with_vision(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path, ("mmproj-tiny-vlm-f16.gguf", 64))
    found = inspect_source(str(folder))
    assert found.gguf_files == ["tiny-vlm-Q8_0.gguf"]  # the projector is not offered as a quantization
    spec = found.spec()
    assert spec["model_specs"][0]["multimodal_projectors"] == ["mmproj-tiny-vlm-f16.gguf"]
    assert "vision" in spec["model_ability"] and found.origin("multimodal_projectors") == \
        "the projector beside the model"
    assert parse_spec("LLM", spec).model_specs[0].multimodal_projectors == ["mmproj-tiny-vlm-f16.gguf"]


def test_projectors_that_do_not_fit_the_model_are_left_out_and_several_are_asked_about(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path, ("mmproj-other-model-f16.gguf", 2048), ("mmproj-tiny-vlm-f32.gguf", 64),
                           ("mmproj-tiny-vlm-f16.gguf", 64))
    found = inspect_source(str(folder))
    assert found.facts["projectors"] == ["mmproj-tiny-vlm-f16.gguf", "mmproj-tiny-vlm-f32.gguf"]
    assert found.facts["projectors_not_fitting"] == ["mmproj-other-model-f16.gguf"]
    assert found.spec()["model_specs"][0]["multimodal_projectors"] == ["mmproj-tiny-vlm-f16.gguf"]
    assert found.origin("multimodal_projectors") == "one of 2 projectors beside the model"


def test_pointing_at_the_projector_says_to_point_at_the_model(tmp_path: Path) -> None:
    folder = vision_folder(tmp_path, ("mmproj-tiny-vlm-f16.gguf", 64))
    with pytest.raises(InspectError, match="a multimodal projector, not a model: point at the model's GGUF"):
        inspect_source(str(folder / "mmproj-tiny-vlm-f16.gguf"))


def test_a_folder_of_projectors_only_is_no_model(tmp_path: Path) -> None:
    write_gguf(tmp_path / "mmproj-f16.gguf", "clip", {"clip.has_vision_encoder": True})
    with pytest.raises(InspectError, match="no .gguf file"):
        inspect_source(str(tmp_path))


def test_a_pytorch_model_with_a_vision_tower_is_proposed_vision(gemma_pt_dir: Path, tmp_path: Path) -> None:
    """A `vision_config` in config.json (Gemma 3, Qwen2-VL...): the model reads images with no projector file."""
    folder = tmp_path / "pt-vision"
    folder.mkdir()
    config = json.loads((gemma_pt_dir / "config.json").read_text())
    config["vision_config"] = {"hidden_size": 64, "image_size": 224, "patch_size": 14}
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json"):
        os.link(gemma_pt_dir / name, folder / name)
    (folder / "model.safetensors").write_bytes((8).to_bytes(8, "little") + b"{}      ")
    (folder / "chat_template.jinja").write_text(
        "{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n{% endfor %}")
    spec = inspect_source(str(folder)).spec()
    assert "vision" in spec["model_ability"] and "multimodal_projectors" not in spec["model_specs"][0]
