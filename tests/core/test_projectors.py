"""`multimodal_projectors` on GGUF specs (Xinference's field): the projector files a vision model's images go
through, named like the model file; a vision GGUF without one answers as if blind, so it is refused."""

from __future__ import annotations

import json

import pytest

from tests.core.test_families import gguf_spec
from xitui.core.errors import SpecError
from xitui.core.specs.spec import parse_llm


def vision_spec(*projectors: object, model_format: str = "ggufv2") -> dict:
    spec = gguf_spec(model_ability=["chat", "vision"])
    spec["model_specs"][0]["model_format"] = model_format
    if model_format == "pytorch":
        spec["model_specs"][0].update(quantization="none", model_uri="/models/mine")
    if projectors:
        spec["model_specs"][0]["multimodal_projectors"] = list(projectors)
    return spec


def test_projector_names_like_the_model_file_and_absolute_paths_are_kept() -> None:
    parsed = parse_llm(vision_spec("mmproj-{quantization}.gguf", "/models/mmproj-f16.gguf"))
    assert parsed.model_specs[0].multimodal_projectors == ["mmproj-{quantization}.gguf", "/models/mmproj-f16.gguf"]
    assert parsed.registration()["model_specs"][0]["multimodal_projectors"][0] == "mmproj-{quantization}.gguf"


def test_a_vision_gguf_without_a_projector_is_refused_in_one_line() -> None:
    with pytest.raises(SpecError) as err:
        parse_llm(vision_spec())
    assert err.value.problems == ["model_specs[0].multimodal_projectors: required for a vision model's GGUF: the "
                                  "projector file (mmproj-*.gguf) that turns images into the model's input"]
    parse_llm(vision_spec(model_format="pytorch"))  # a PyTorch vision model reads images without one


@pytest.mark.parametrize(("projectors", "problem"), [
    (["../../etc/passwd"], "must name a file, not a path"),
    (["sub/mmproj.gguf"], "must name a file, not a path"),
    (["mmproj-{quantization:>99999999}.gguf"], "may only use the {quantization} placeholder"),
    (["mmproj-{0}.gguf"], "may only use the {quantization} placeholder"),
    (["mmproj-{.gguf"], "not a valid template"),
    (["/models/mm\x00proj.gguf"], "must be a file name or an absolute path"),
    (["x" * 300], "at most 16 strings of at most 256 characters"),
    ([f"mmproj-{i}.gguf" for i in range(17)], "at most 16 strings"),
    ("mmproj.gguf", "must be a list of strings"),
    ([7], "must be a list of strings"),
])
def test_projector_names_at_their_worst(projectors: object, problem: str) -> None:
    spec = vision_spec()
    spec["model_specs"][0]["multimodal_projectors"] = projectors
    with pytest.raises(SpecError) as err:
        parse_llm(json.dumps(spec))
    assert any(problem in p and "multimodal_projectors" in p for p in err.value.problems), err.value.problems
    assert all("\n" not in p for p in err.value.problems)


def test_only_gguf_specs_name_projectors() -> None:
    with pytest.raises(SpecError, match="only GGUF specs name projector files"):
        parse_llm(vision_spec("mmproj.gguf", model_format="pytorch"))


# --- a PyTorch vision model run by llama.cpp: converted with its projector, or left to transformers ----------


def model_dir(tmp_path, architecture: str, **config: object):  # type: ignore[no-untyped-def]
    folder = tmp_path / architecture
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": [architecture], **config}))
    return folder


def test_a_vision_model_the_converter_writes_a_projector_for_is_converted_with_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from xitui.core.model_files import conversion

    if not conversion.converter_architectures():
        pytest.skip("llama.cpp's converter is not installed")
    assert "Gemma3ForConditionalGeneration" in conversion.converter_projector_architectures()
    assert "LlamaForCausalLM" not in conversion.converter_projector_architectures()  # (a text model's class)
    gemma = model_dir(tmp_path, "Gemma3ForConditionalGeneration", vision_config={"hidden_size": 64})
    assert conversion.sees(gemma) and conversion.projector_refusal(gemma) is None
    text = model_dir(tmp_path, "LlamaForCausalLM")
    assert not conversion.sees(text)


@pytest.mark.parametrize("config", [
    {"text_config": {"rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]}}},
    {"rope_scaling": {"mrope_section": [16, 24, 24]}},
    {"text_config": {"rope_parameters": {"mrope_section": [24, 20, 20]}}},
])
def test_a_vision_model_placed_by_mrope_stays_on_transformers(tmp_path, config: dict) -> None:  # type: ignore[no-untyped-def]
    from xitui.core.model_files import conversion

    if not conversion.converter_architectures():
        pytest.skip("llama.cpp's converter is not installed")
    qwen = model_dir(tmp_path, "Qwen2VLForConditionalGeneration", vision_config={"depth": 2}, **config)
    assert "M-RoPE" in (conversion.projector_refusal(qwen) or "")
    odd = model_dir(tmp_path, "SomeVisionForCausalLM", vision_config={}, text_config="not a dict")
    assert "writes no projector" in (conversion.projector_refusal(odd) or "")
    assert not conversion.places_by_mrope(odd)


def test_the_launch_plan_converts_a_vision_model_only_where_its_projector_comes_too(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """On this machine (no GPU) a PyTorch model llama.cpp's converter knows runs on llama.cpp; a vision model
    whose projector cannot be made stays on transformers, and asking for llama.cpp says why."""
    from xitui.core.errors import LaunchError
    from xitui.core.model_files import conversion
    from xitui.core.specs.registry import Registry
    from xitui.server.runtime.launch_plan import LaunchPlan

    if conversion.can_convert():
        pytest.skip("llama.cpp or its converter is not installed")
    registry = Registry(tmp_path / "home")
    for name, folder in (
            ("gemma-vision", model_dir(tmp_path, "Gemma3ForConditionalGeneration", vision_config={})),
            ("qwen-vision", model_dir(tmp_path, "Qwen2VLForConditionalGeneration", vision_config={},
                                      rope_scaling={"mrope_section": [16, 24, 24]}))):
        spec = vision_spec(model_format="pytorch")
        spec["model_name"] = name
        spec["model_specs"][0]["model_uri"] = str(folder)
        registry.register("LLM", json.dumps(spec))
    gemma = LaunchPlan.build(registry, {"model_name": "gemma-vision"})
    assert (gemma.engine, gemma.converted_to) == ("llama.cpp", "F16")
    qwen = LaunchPlan.build(registry, {"model_name": "qwen-vision"})
    assert (qwen.engine, qwen.converted_to) == ("transformers", None)
    with pytest.raises(LaunchError) as refused:
        LaunchPlan.build(registry, {"model_name": "qwen-vision", "model_engine": "llama.cpp"})
    assert str(refused.value) == ("Qwen2VLForConditionalGeneration places image cells by M-RoPE, which xitui's "
                                  "llama.cpp engine does not yet do: model_engine transformers runs it, images and all")
