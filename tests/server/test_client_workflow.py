"""The documented workflow through xitui.client.Client and the official xinference-client, on real gemma."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.server.conftest import ServerProcess, gguf_spec
from xitui.client import ChatModelHandle, Client, ClientError

PROMPT = "The capital of France is Paris. The capital of Germany is"


def tokenize(gguf: Path, text: str) -> list[int]:
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    return vocab.tokenize(text.encode(), add_bos=True, special=True)


def test_documented_workflow_with_xitui_client(server: ServerProcess, gguf_path: Path) -> None:
    client = Client(server.url)
    client.register_model(model_type="LLM", model=gguf_spec("custom-gemma", gguf_path), persist=False)
    names = {r["model_name"]: r["is_builtin"] for r in client.list_model_registrations(model_type="LLM")}
    assert names["custom-gemma"] is False
    assert names["llama-2-chat"] is True
    reg = client.get_model_registration("LLM", "custom-gemma")
    assert reg["version"] == 2 and reg["model_specs"][0]["quantization"] == "q4_k_m"

    uid = client.launch_model(model_name="custom-gemma", model_format="ggufv2")
    assert uid == "custom-gemma"
    try:
        model = client.get_model(model_uid=uid)
        assert isinstance(model, ChatModelHandle)
        result = model.generate(PROMPT, generate_config={"max_tokens": 12, "temperature": 0})
        assert result["object"] == "text_completion"
        text = result["choices"][0]["text"]
        assert "Berlin" in text
        assert result["usage"]["completion_tokens"] <= 12
        assert result["usage"]["prompt_tokens"] == len(tokenize(gguf_path, PROMPT))
        assert result["model"] == uid

        # streaming gives the same greedy text, piece by piece
        chunks = list(model.generate(PROMPT, generate_config={"max_tokens": 12, "temperature": 0, "stream": True}))
        assert len(chunks) > 3
        assert "".join(c["choices"][0]["text"] for c in chunks) == text
        assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")
        assert chunks[-1]["usage"]["completion_tokens"] == result["usage"]["completion_tokens"]

        listed = client.list_models()
        assert listed[uid]["state"] == "ready" and listed[uid]["model_format"] == "ggufv2"
    finally:
        client.terminate_model(model_uid=uid)
    assert uid not in client.list_models()
    client.unregister_model(model_type="LLM", model_name="custom-gemma")
    with pytest.raises(ClientError) as err:
        client.get_model_registration("LLM", "custom-gemma")
    assert err.value.status_code == 404


def test_chat_uses_the_builtin_prompt_style_and_its_stop_words(server: ServerProcess, gguf_path: Path) -> None:
    client = Client(server.url)
    # version 2 form; GEMMA style: <start_of_turn>user ... <end_of_turn>, stops at <end_of_turn>
    client.register_model("LLM", gguf_spec("gemma-chat-v2", gguf_path, version=2))
    uid = client.launch_model(model_name="gemma-chat-v2", model_uid="chatty")
    try:
        model = client.get_model(uid)
        messages = [{"role": "user", "content": "Say hello."}]
        reply = model.chat(messages, generate_config={"max_tokens": 40, "temperature": 0})
        assert reply["object"] == "chat.completion"
        content = reply["choices"][0]["message"]["content"]
        assert reply["choices"][0]["message"]["role"] == "assistant"
        assert "<end_of_turn>" not in content and "<start_of_turn>" not in content
        # the prompt the worker built is the GEMMA rendering: count its tokens the long way round
        assert reply["usage"]["prompt_tokens"] > 8
        chunks = list(model.chat(messages, generate_config={"max_tokens": 40, "temperature": 0, "stream": True}))
        assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
        streamed = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        assert streamed == content
        assert chunks[-1]["choices"][0]["finish_reason"] is not None
    finally:
        client.terminate_model(uid)
        client.unregister_model("LLM", "gemma-chat-v2")


def test_official_xinference_client_drives_the_workflow(server: ServerProcess, gguf_path: Path) -> None:
    from xinference_client import RESTfulClient

    client = RESTfulClient(server.url)
    client.register_model(model_type="LLM", model=gguf_spec("xinf-gemma", gguf_path), persist=False)
    regs = client.list_model_registrations(model_type="LLM")
    assert {"model_name": "xinf-gemma", "is_builtin": False} in regs
    # the documented call, without model_engine (Xinference 4.1 itself refuses this)
    uid = client.launch_model(model_name="xinf-gemma", model_format="ggufv2")
    try:
        model = client.get_model(model_uid=uid)
        out = model.generate(PROMPT, generate_config={"max_tokens": 8, "temperature": 0})
        assert "Berlin" in out["choices"][0]["text"]
        pieces = [c["choices"][0]["text"] for c in
                  model.generate(PROMPT, generate_config={"max_tokens": 8, "temperature": 0, "stream": True})]
        assert "".join(pieces) == out["choices"][0]["text"]
        chat = model.chat(messages=[{"role": "user", "content": "Hi"}], generate_config={"max_tokens": 8})
        assert chat["choices"][0]["message"]["role"] == "assistant"
        assert uid in client.list_models()
        with pytest.raises(RuntimeError, match="already running"):
            client.launch_model(model_name="xinf-gemma", model_format="ggufv2")
    finally:
        client.terminate_model(model_uid=uid)
    client.unregister_model(model_type="LLM", model_name="xinf-gemma")
    assert all(r["model_name"] != "xinf-gemma" for r in client.list_model_registrations(model_type="LLM"))


def test_bundled_demo_models_are_listed_and_launch(server: ServerProcess) -> None:
    client = Client(server.url)
    llms = {r["model_name"]: r for r in client.list_model_registrations("LLM", detailed=True)}
    assert llms["demo-gemma3-270m"]["is_builtin"] is True
    embeddings = {r["model_name"] for r in client.list_model_registrations("embedding")}
    assert "demo-minilm" in embeddings
    uid = client.launch_model(model_name="demo-gemma3-270m")
    try:
        desc = client.describe_model(uid)
        assert desc["context_length"] == 8192 and desc["model_engine"] == "llama.cpp"
        assert desc["model_ability"] == ["generate"]  # a base model: it completes text, it does not chat
        assert desc["state"] == "ready" and desc["pid"] > 0 and desc["memory_rss"] > 100 * 2**20
        out = client.get_model(uid).generate(PROMPT, {"max_tokens": 4, "temperature": 0})
        assert out["choices"][0]["text"].strip()
        metrics = client.describe_model(uid)["metrics"]
        assert metrics["requests"] == 1 and metrics["last_ttft"] > 0
    finally:
        client.terminate_model(uid)


def test_persisted_registration_survives_a_server_restart(tmp_path: Path, gguf_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    first = ServerProcess(home)
    try:
        Client(first.url).register_model("LLM", gguf_spec("kept-gemma", gguf_path), persist=True)
        Client(first.url).register_model("LLM", gguf_spec("lost-gemma", gguf_path), persist=False)
    finally:
        first.stop()
    assert json.loads((home / "model" / "llm" / "kept-gemma.json").read_text())["model_name"] == "kept-gemma"
    second = ServerProcess(home)
    try:
        names = {r["model_name"] for r in Client(second.url).list_model_registrations("LLM")}
        assert "kept-gemma" in names and "lost-gemma" not in names
    finally:
        second.stop()
