"""A PyTorch vision model on a real server: the tiny Gemma 3 of tests/model_files.py as the safetensors it was
converted from. With model_engine transformers its images go through the model's own processor
(AutoModelForImageTextToText); launched without an engine on this machine (no GPU) it is converted to GGUF
with its projector and read by llama.cpp. Both paths read the same image into the same number of cells."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.model_files import tiny_vlm_pytorch
from tests.server.conftest import ServerProcess
from tests.server.test_vision import answer, asking, chat, data_url, png, sdk_answers_whole_and_streamed
from xitui.client import Client

pytestmark = pytest.mark.slow

#: The warm worker imports both engines: this module launches on both.
WARM = "llama.cpp,transformers"


def pytorch_spec(name: str) -> str:
    return json.dumps({
        "version": 2, "model_name": name, "model_lang": ["en"], "model_ability": ["chat", "vision"],
        "context_length": 2048,
        "model_specs": [{"model_format": "pytorch", "model_size_in_billions": "0_02", "quantization": "none",
                         "model_uri": str(tiny_vlm_pytorch())}]})


@pytest.fixture(scope="module")
def torch_vlm(server: ServerProcess) -> Iterator[str]:
    client = Client(server.url)
    client.register_model("LLM", pytorch_spec("tiny-vlm-pt"))
    uid = client.launch_model(model_name="tiny-vlm-pt", model_engine="transformers")
    yield uid
    client.terminate_model(uid)
    client.unregister_model("LLM", "tiny-vlm-pt")


def test_transformers_reads_the_image_whole_and_streamed(server: ServerProcess, torch_vlm: str) -> None:
    whole, streamed = sdk_answers_whole_and_streamed(server, torch_vlm)
    assert whole and streamed == whole
    described = Client(server.url).describe_model(torch_vlm)
    assert described["reads"] == ["images"] and described["model_engine"] == "transformers"
    assert "multimodal_projector" not in described


def test_on_transformers_the_image_decides_the_answer(server: ServerProcess, torch_vlm: str) -> None:
    first, usage = answer(server, torch_vlm, data_url(png(seed=2)))
    again, _ = answer(server, torch_vlm, data_url(png(seed=2)))
    other, _ = answer(server, torch_vlm, data_url(png((200, 30, 30))))
    blind, usage_blind = answer(server, torch_vlm)
    assert first == again and first != other and first != blind
    assert usage["prompt_tokens_details"]["image_tokens"] == 16  # the processor's cells an image (the config's)
    assert "prompt_tokens_details" not in usage_blind or "image_tokens" not in usage_blind["prompt_tokens_details"]


def test_eight_image_requests_at_once_on_transformers(server: ServerProcess, torch_vlm: str) -> None:
    urls = [data_url(png(seed=100 + i)) for i in range(8)]
    alone = [answer(server, torch_vlm, url)[0] for url in urls]
    assert len(set(alone)) > 1
    with ThreadPoolExecutor(8) as pool:
        together = list(pool.map(lambda url: answer(server, torch_vlm, url)[0], urls))
    assert together == alone


@pytest.mark.parametrize("text", ["<start_of_image>", "<image_soft_token>" * 3, "<end_of_image>"])
def test_text_that_writes_the_models_image_tokens_is_one_line(server: ServerProcess, torch_vlm: str,
                                                             text: str) -> None:
    """A client's own image tokens beside an image would take cells the processor counts for the images sent:
    refused, and the next request is served."""
    refused = chat(server, torch_vlm, asking(data_url(png(seed=7)), text=f"look {text} here"))
    assert refused.status_code == 400 and "this model's own image token" in refused.json()["detail"], refused.text
    assert answer(server, torch_vlm, data_url(png(seed=7)))[0]


def test_a_damaged_image_is_one_line_on_transformers(server: ServerProcess, torch_vlm: str) -> None:
    """A JPEG cut in its pixel data: its header passes the server's check, the worker's decoding refuses it."""
    import io

    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(out, "JPEG")
    refused = chat(server, torch_vlm, asking(data_url(out.getvalue()[:len(out.getvalue()) // 2], "jpeg")))
    assert refused.status_code == 400 and "could not be read" in refused.json()["detail"], refused.text
    assert "\n" not in refused.json()["detail"]
    assert answer(server, torch_vlm, data_url(png(seed=8)))[0]


def test_converted_for_llama_cpp_with_its_projector_and_the_cells_agree(server: ServerProcess,
                                                                        torch_vlm: str) -> None:
    """Launched without an engine on a machine with no GPU, the PyTorch vision model runs on llama.cpp:
    converted to GGUF with its projector, so it still sees; an image takes as many cells as on transformers."""
    client = Client(server.url)
    client.register_model("LLM", pytorch_spec("tiny-vlm-auto"))
    try:
        uid = client.launch_model(model_name="tiny-vlm-auto")
        described = client.describe_model(uid)
        assert described["model_engine"] == "llama.cpp" and described["reads"] == ["images"], described
        assert described["multimodal_projector"].endswith(".mmproj-F16.gguf")
        seen, usage = answer(server, uid, data_url(png(seed=2)))
        other, _ = answer(server, uid, data_url(png((200, 30, 30))))
        assert seen != other
        _, torch_usage = answer(server, torch_vlm, data_url(png(seed=2)))
        assert usage["prompt_tokens_details"]["image_tokens"] == torch_usage["prompt_tokens_details"]["image_tokens"]
    finally:
        client.terminate_model("tiny-vlm-auto")
        client.unregister_model("LLM", "tiny-vlm-auto")

