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
