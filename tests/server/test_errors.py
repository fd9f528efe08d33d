"""Bad input gets a 4xx with a plain `detail`, and the model still serves after each one."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import ServerProcess, gguf_spec
from tests.support.models import launched
from xitui.client import Client


@pytest.fixture(scope="module")
def gemma(server: ServerProcess, gguf_path: Path) -> Iterator[str]:
    client = Client(server.url)
    with launched(client, "err-gemma", gguf_spec("err-gemma", gguf_path), model_uid="err-gemma") as uid:
        yield uid


def assert_plain(response: httpx.Response, status: int | tuple[int, ...]) -> str:
    statuses = (status,) if isinstance(status, int) else status
    assert response.status_code in statuses, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, str) and detail
    assert "Traceback" not in detail and "\n" not in detail and "0x" not in detail
    return detail


def still_serves(http: httpx.Client, uid: str) -> None:
    r = http.post("/v1/completions", json={"model": uid, "prompt": "One, two,", "max_tokens": 3, "temperature": 0})
    assert r.status_code == 200 and r.json()["choices"][0]["text"]


def test_bad_requests(server: ServerProcess, gemma: str, gguf_path: Path, tmp_path: Path) -> None:
    http = httpx.Client(base_url=server.url, timeout=60)
    long_prompt = "word " * 3000  # context_length is 2048
    v2 = json.loads(gguf_spec("x", gguf_path, version=2))
    ggml = dict(v2, model_name="old-ggml")
    ggml["model_specs"] = [dict(v2["model_specs"][0], model_format="ggmlv3", quantization="q4_0",
                                model_file_name_template="m.{quantization}.bin")]
    missing = dict(v2, model_name="missing-file")
    missing["model_specs"] = [dict(v2["model_specs"][0], model_uri=str(tmp_path / "nope.gguf"))]
    not_gguf = tmp_path / "fake.gguf"
    not_gguf.write_bytes(b"this is not a model" * 100)
    fake = dict(v2, model_name="fake-gguf")
    fake["model_specs"] = [dict(v2["model_specs"][0], model_uri=str(not_gguf))]
    for spec in (ggml, missing, fake):
        assert http.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}).status_code == 200

    cases: list[tuple[str, str, dict | str | None, int | tuple[int, ...], str]] = [
        ("GET", "/v1/models/no-such-uid", None, 404, "not running"),
        ("DELETE", "/v1/models/no-such-uid", None, 404, "not running"),
        ("GET", "/v1/models/no-such-uid/progress", None, 404, "not running"),
        ("POST", "/v1/completions", {"model": "no-such-uid", "prompt": "x"}, 404, "not running"),
        ("DELETE", "/v1/model_registrations/LLM/llama-2-chat", None, 403, "builtin"),
        ("DELETE", "/v1/model_registrations/LLM/never-was", None, 404, "not registered"),
        ("GET", "/v1/model_registrations/LLM/never-was", None, 404, "not registered"),
        ("GET", "/v1/model_registrations/image", None, 400, "unsupported model type"),
        ("POST", "/v1/model_registrations/LLM", "{not json", 400, "not valid JSON"),
        ("POST", "/v1/model_registrations/LLM", {"model": "{\"model_name\": \"bad\"}"}, 400, "model_specs"),
        ("POST", "/v1/model_registrations/LLM", {"model": gguf_spec("err-gemma", gguf_path)}, 400, "already registered"),
        ("POST", "/v1/model_registrations/LLM", {"model": gguf_spec("llama-2-chat", gguf_path)}, 400, "builtin"),
        ("POST", "/v1/models", {"model_name": "err-gemma"}, 409, "already running"),
        ("POST", "/v1/models", {"model_name": "nobody"}, 404, "not registered"),
        ("POST", "/v1/models", {"model_name": "err-gemma", "model_uid": "x2", "model_format": "pytorch"}, 404, "no spec"),
        ("POST", "/v1/models", {"model_name": "err-gemma", "model_uid": "x4", "model_engine": "transformers"}, 404,
         "cannot run ggufv2"),
        ("POST", "/v1/models", {"model_name": "err-gemma", "model_uid": "x3", "model_engine": "vllm"}, 400, "model_engine"),
        ("POST", "/v1/models", {"model_name": "old-ggml"}, 400, "model file not found"),
        ("POST", "/v1/models", {"model_name": "missing-file"}, 400, "not found"),
        ("POST", "/v1/models", {"model_name": "fake-gguf"}, 400, "not a GGUF file"),
        ("POST", "/v1/models", {"model_type": "image", "model_name": "x"}, 400, "unsupported model type"),
        ("POST", "/v1/completions", {"model": gemma, "prompt": long_prompt}, 400, "context"),
        ("POST", "/v1/completions", {"model": gemma, "prompt": long_prompt, "stream": True}, 400, "context"),
        ("POST", "/v1/completions", {"model": gemma}, 400, "prompt"),
        ("POST", "/v1/completions", {"model": gemma, "prompt": "x", "max_tokens": "many"}, 400, "max_tokens"),
        ("POST", "/v1/completions", {"model": gemma, "prompt": "x", "max_tokens": -1}, 400, "max_tokens"),
        ("POST", "/v1/chat/completions", {"model": gemma, "messages": [{"role": "user", "content": "x"}],
                                          "max_tokens": 0}, 400, "greater than or equal to 1"),
        ("POST", "/v1/completions", "[1, 2", 400, "not valid JSON"),
        ("POST", "/v1/chat/completions", {"model": gemma, "messages": []}, 400, "messages"),
        ("POST", "/v1/chat/completions", {"model": gemma, "messages": [{"role": "wizard", "content": "x"}]}, 400, "role"),
        ("POST", "/v1/embeddings", {"model": gemma, "input": "x"}, 400, "not an embedding model"),
        ("GET", "/v1/no/such/route", None, 404, "Not Found"),
    ]
    for method, path, body, status, words in cases:
        if isinstance(body, str):
            response = http.request(method, path, content=body, headers={"content-type": "application/json"})
        else:
            response = http.request(method, path, json=body)
        detail = assert_plain(response, status)
        assert words.lower() in detail.lower(), (path, body, detail)
        still_serves(http, gemma)
    # failed launches leave nothing behind
    assert set(Client(server.url).list_models()) == {gemma}


def test_openapi_document_is_served(server: ServerProcess) -> None:
    doc = httpx.get(f"{server.url}/openapi.json").json()
    for path in ("/v1/models", "/v1/completions", "/v1/chat/completions", "/v1/embeddings",
                 "/v1/model_registrations/{model_type}"):
        assert path in doc["paths"]


def test_resources_without_a_gpu(server: ServerProcess) -> None:
    client = Client(server.url)
    res = client.resources()
    assert res["gpus"] == [] and res["gpu_note"]
    assert res["memory"]["total"] > res["memory"]["available"] > 0
    info = client.cluster_info()
    assert info[0]["gpu_count"] == 0 and info[0]["gpu_vram_total"] == 0
    assert client.status()["status"] == "ok"
