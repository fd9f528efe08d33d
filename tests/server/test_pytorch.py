"""PyTorch models through transformers: the documented snippet on real weights, and generation mechanics."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import xitui_cmd
from tests.server.conftest import ServerProcess, gguf_spec, pytorch_spec
from tests.support.models import launched
from xitui.client import Client, ClientError

#: Its launches are transformers launches: the warm worker imports that engine, so they fork.
WARM = "llama.cpp,transformers"

PROMPT = "The capital of France is Paris. The capital of Germany is"


def test_documented_python_snippet_on_real_weights(server: ServerProcess, gemma_pt_dir: Path, gguf_path: Path) -> None:
    client = Client(server.url)
    # the documentation's snippet, with the import changed and the answer's length bounded (its default, 1024
    # sampled tokens at ~7 tok/s, made this the suite's slowest test)
    client.register_model(model_type="LLM", model=pytorch_spec("custom-llama-2", gemma_pt_dir), persist=False)
    assert {"model_name": "custom-llama-2", "is_builtin": False} in client.list_model_registrations(model_type="LLM")
    uid = client.launch_model(model_name="custom-llama-2", model_format="pytorch", model_engine="transformers")
    try:
        desc = client.describe_model(uid)
        assert desc["model_engine"] == "transformers" and desc["quantization"] == "none" and desc["device"] == "cpu"
        answer = client.get_model(model_uid=uid).generate("What is the largest animal in the world?", {"max_tokens": 12})
        # sampled (temperature 0.7, no seed), so what it says varies: a base model may well say only spaces
        assert answer["usage"]["completion_tokens"] > 0 and answer["choices"][0]["text"]

        # cross-check of both backends: greedy text of the dequantised weights == llama.cpp on the GGUF
        torch_text = client.get_model(uid).generate(PROMPT, {"max_tokens": 8, "temperature": 0})["choices"][0]["text"]
        client.register_model("LLM", gguf_spec("cross-gguf", gguf_path))
        gguf_uid = client.launch_model(model_name="cross-gguf")
        try:
            gguf_text = client.get_model(gguf_uid).generate(PROMPT, {"max_tokens": 8, "temperature": 0})
        finally:
            client.terminate_model(gguf_uid)
            client.unregister_model("LLM", "cross-gguf")
        assert torch_text.startswith(" Berlin")
        assert torch_text.split()[:4] == gguf_text["choices"][0]["text"].split()[:4]

        # streaming arrives token by token, and adds up to the same text
        chunks = list(client.get_model(uid).generate(PROMPT, {"max_tokens": 8, "temperature": 0, "stream": True}))
        pieces = [c["choices"][0]["text"] for c in chunks if c["choices"][0]["text"]]
        assert "".join(pieces) == torch_text and len(pieces) >= 6
    finally:
        client.terminate_model(uid)
    client.unregister_model(model_type="LLM", model_name="custom-llama-2")


@pytest.fixture(scope="module")
def tiny(server: ServerProcess, tiny_pt_dir: Path) -> Iterator[str]:
    client = Client(server.url)
    spec = pytorch_spec("tiny-torch", tiny_pt_dir, model_ability=["generate", "chat"])
    with launched(client, "tiny-torch", spec, model_format="pytorch", model_engine="transformers") as uid:
        yield uid


def test_generation_mechanics(server: ServerProcess, tiny: str) -> None:
    model = Client(server.url).get_model(tiny)
    greedy = model.generate("Hello there", {"max_tokens": 12, "temperature": 0, "ignore_eos": True})
    assert greedy["usage"]["completion_tokens"] == 12 and greedy["choices"][0]["finish_reason"] == "length"
    again = model.generate("Hello there", {"max_tokens": 12, "temperature": 0, "ignore_eos": True})
    assert again["choices"][0]["text"] == greedy["choices"][0]["text"]  # greedy at temperature 0

    text = greedy["choices"][0]["text"]
    cut_at = text.strip().split()[2] if len(text.split()) > 2 else text.strip()[-3:]
    stopped = model.generate("Hello there", {"max_tokens": 12, "temperature": 0, "ignore_eos": True, "stop": [cut_at]})
    assert stopped["choices"][0]["text"] == text[: text.index(cut_at)]
    assert stopped["choices"][0]["finish_reason"] == "stop"

    sampled = [model.generate("Hello there", {"max_tokens": 12, "temperature": 1.0, "seed": 7, "ignore_eos": True})
               for _ in range(2)]
    assert sampled[0]["choices"][0]["text"] == sampled[1]["choices"][0]["text"]  # the seed makes sampling repeatable

    with pytest.raises(ClientError, match="context") as err:
        model.generate("word " * 3000, {"max_tokens": 2})
    assert err.value.status_code == 400


def test_chat_without_a_template_says_what_to_add(server: ServerProcess, tiny: str, tiny_pt_dir: Path) -> None:
    client = Client(server.url)
    assert client.describe_model(tiny)["chat_format"] is None
    with pytest.raises(ClientError, match='add "prompt_style".*or "chat_template"') as err:
        client.get_model(tiny).chat([{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400

    template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"
    client.register_model("LLM", pytorch_spec("tiny-templated", tiny_pt_dir, model_ability=["chat", "generate"],
                                              chat_template=template, version=2) .replace(
        '"quantizations": ["4-bit", "8-bit", "none"]', '"quantization": "none"'))
    uid = client.launch_model(model_name="tiny-templated", model_format="pytorch", model_engine="transformers")
    try:
        reply = client.get_model(uid).chat([{"role": "user", "content": "hi"}], generate_config={"max_tokens": 4})
        # the template's text, as a plain prompt, is as many tokens
        expected = client.get_model(uid).generate("<user>hi\n<assistant>", {"max_tokens": 1})["usage"]["prompt_tokens"]
        assert reply["usage"]["prompt_tokens"] == expected > 4
    finally:
        client.terminate_model(uid)
        client.unregister_model("LLM", "tiny-templated")


def test_four_bit_without_a_gpu_runs_on_llama_cpp_and_transformers_says_why_not(server: ServerProcess, tiny: str,
                                                                                  tiny_pt_dir: Path) -> None:
    """The seed's 4-bit on a machine without a GPU: converted to GGUF Q4_K_M and run by llama.cpp, the launch
    says so; asked of transformers, one line on what to do instead."""
    launch = [*xitui_cmd(), "launch", "-e", server.url, "--model-name", "tiny-torch", "--model-format", "pytorch",
              "--quantization", "4-bit"]
    proc = subprocess.run([*launch, "--model-uid", "tiny4"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "tiny4 runs on llama.cpp as GGUF Q4_K_M (its 4-bit), converted from its safetensors" in proc.stderr
    assert Client(server.url).describe_model("tiny4")["model_engine"] == "llama.cpp"
    Client(server.url).terminate_model("tiny4")
    proc = subprocess.run([*launch, "--model-uid", "tiny4t", "--model-engine", "transformers"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs an NVIDIA GPU" in lines[0] and "--model-engine llama.cpp" in lines[0]
    assert "tiny4t" not in Client(server.url).list_models()


def test_pickled_weights_are_refused(server: ServerProcess, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (tmp_path / "pytorch_model.bin").write_bytes(b"\x80\x04pickle")
    client = Client(server.url)
    client.register_model("LLM", pytorch_spec("pickled", tmp_path))
    with pytest.raises(ClientError, match="safetensors only"):
        client.launch_model(model_name="pickled", model_format="pytorch", model_engine="transformers")
    client.unregister_model("LLM", "pickled")
