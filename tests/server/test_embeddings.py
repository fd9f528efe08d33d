"""The documented custom embedding JSON on real all-MiniLM-L6-v2 weights: CLI, Client, xinference-client."""

from __future__ import annotations

import json
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xitui_cmd
from tests.model_files import minilm_dir
from tests.server.conftest import ServerProcess
from xitui.client import Client, ClientError, EmbeddingModelHandle

#: Its sentence-transformers launches fork from a warm worker that imported that library (~1 s, against ~6 s cold).
WARM = "llama.cpp,sentence_transformers"


def flat_spec(name: str) -> str:
    """The documentation's flat embedding JSON, pointing at the packaged weights."""
    return json.dumps({"model_name": name, "dimensions": 384, "max_tokens": 256, "language": ["en"],
                       "model_id": "sentence-transformers/all-MiniLM-L6-v2", "model_uri": f"file://{minilm_dir()}"})


@pytest.fixture(scope="module")
def minilm(server: ServerProcess) -> Iterator[str]:
    client = Client(server.url)
    client.register_model(model_type="embedding", model=flat_spec("custom-minilm"), persist=False)
    uid = client.launch_model(model_name="custom-minilm", model_type="embedding")
    yield uid
    client.terminate_model(uid)
    client.unregister_model(model_type="embedding", model_name="custom-minilm")


@pytest.fixture(scope="module")
def direct() -> object:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_dir()), device="cpu")


def cosine(a: list[float], b: list[float]) -> float:
    import math

    return sum(x * y for x, y in zip(a, b, strict=False)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_registration_is_returned_in_version_2_form(server: ServerProcess, minilm: str) -> None:
    reg = Client(server.url).get_model_registration("embedding", "custom-minilm")
    assert reg["version"] == 2 and reg["dimensions"] == 384 and reg["max_tokens"] == 256
    assert reg["model_specs"][0]["model_uri"] == f"file://{minilm_dir()}"


def test_client_embeddings_match_direct_sentence_transformers(server: ServerProcess, minilm: str, direct) -> None:
    handle = Client(server.url).get_model(minilm)
    assert isinstance(handle, EmbeddingModelHandle)
    texts = ["The cat sat on the mat.", "A dog slept on the rug.", "Quarterly revenue grew by 4%."]
    result = handle.create_embedding(texts)
    assert result["object"] == "list" and result["model"] == minilm
    vectors = [item["embedding"] for item in result["data"]]
    assert [item["index"] for item in result["data"]] == [0, 1, 2]
    expected = direct.encode(texts)
    for got, want in zip(vectors, expected, strict=False):
        assert len(got) == 384
        assert cosine(got, want.tolist()) > 0.9999
    assert result["usage"]["prompt_tokens"] == sum(len(direct.tokenizer(t)["input_ids"]) for t in texts)
    assert result["truncated"] is False
    single = handle.create_embedding("The cat sat on the mat.")
    assert cosine(single["data"][0]["embedding"], vectors[0]) > 0.9999


def test_dimensions_keeps_the_leading_ones_at_unit_length_and_refuses_what_it_cannot(server: ServerProcess,
                                                                                     minilm: str, direct) -> None:
    """OpenAI's `dimensions`: the first N of each vector, renormalised (it was ignored once); the worst values
    are one-line 400s and the model goes on serving."""
    import httpx

    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Quarterly revenue grew by 4%."]
    with httpx.Client(base_url=server.url, timeout=60) as h:
        got = h.post("/v1/embeddings", json={"model": minilm, "input": texts, "dimensions": 128})
        assert got.status_code == 200, got.text
        short = [item["embedding"] for item in got.json()["data"]]
        full = direct.encode(texts)
        for vector, whole in zip(short, full, strict=True):
            assert len(vector) == 128 and abs(sum(x * x for x in vector) - 1) < 1e-4
            assert cosine(vector, whole[:128].tolist()) > 0.9999
        assert cosine(short[0], short[1]) > cosine(short[0], short[2])  # similar texts still score higher
        for worst, says in ((385, "dimensions: this model's vectors have 384"), (0, "dimensions"),
                            (-1, "dimensions"), (10**12, "dimensions"), (True, "dimensions"), ("64", "dimensions"),
                            (64.5, "dimensions"), (None, None)):
            answer = h.post("/v1/embeddings", json={"model": minilm, "input": "x", "dimensions": worst})
            if says is None:
                assert len(answer.json()["data"][0]["embedding"]) == 384
                continue
            assert answer.status_code == 400 and says in answer.json()["detail"], (worst, answer.text)
            assert "\n" not in answer.json()["detail"]
        assert len(h.post("/v1/embeddings", json={"model": minilm, "input": "x", "dimensions": 384}).json()[
            "data"][0]["embedding"]) == 384


def test_long_input_is_truncated_and_says_so_or_refused(server: ServerProcess, minilm: str) -> None:
    handle = Client(server.url).get_model(minilm)
    long_text = "word " * 600
    result = handle.create_embedding(long_text)
    assert result["truncated"] is True and result["usage"]["prompt_tokens"] == 256
    with pytest.raises(ClientError, match="at most 256") as err:
        handle.create_embedding(long_text, truncate=False)
    assert err.value.status_code == 400
    assert handle.create_embedding("still serving")["data"][0]["embedding"]


def test_thirty_two_concurrent_clients_are_batched(server: ServerProcess, minilm: str, direct) -> None:
    sentences = [f"Sentence number {i} is about topic {i % 7}." for i in range(32)]
    results: dict[int, list[float]] = {}
    barrier = threading.Barrier(32)

    def one(i: int) -> None:
        client = Client(server.url)
        handle = client.get_model(minilm)
        barrier.wait()
        results[i] = handle.create_embedding(sentences[i])["data"][0]["embedding"]

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 32
    expected = direct.encode(sentences)
    for i in range(32):  # each client got its own sentence's vector back
        assert cosine(results[i], expected[i].tolist()) > 0.9999
    metrics = Client(server.url).describe_model(minilm)["metrics"]
    assert metrics["max_batch_size"] > 1


def test_cli_embed_from_arguments_and_stdin(server: ServerProcess, minilm: str) -> None:
    out = subprocess.run([*xitui_cmd(), "embed", "-e", server.url, "--model-uid", minilm, "hello world", "good night"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith("384 dims [") and lines[0].endswith("hello world")
    piped = subprocess.run([*xitui_cmd(), "embed", "-e", server.url, "-u", minilm, "--json"],
                           input="first line\n\nsecond line\n", capture_output=True, text=True, timeout=60)
    data = json.loads(piped.stdout)
    assert len(data["data"]) == 2 and len(data["data"][1]["embedding"]) == 384
    long_text = "word " * 600
    cut = subprocess.run([*xitui_cmd(), "embed", "-e", server.url, "-u", minilm, long_text],
                         capture_output=True, text=True, timeout=60)
    assert cut.returncode == 0 and "truncated" in cut.stderr
    refused = subprocess.run([*xitui_cmd(), "embed", "-e", server.url, "-u", minilm, "--no-truncate", long_text],
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1 and "at most 256" in refused.stderr


def test_cli_launch_embedding_model(server: ServerProcess, tmp_path: Path) -> None:
    spec = tmp_path / "emb.json"
    spec.write_text(flat_spec("cli-minilm"))
    run = lambda *a: subprocess.run([*xitui_cmd(), *a, "-e", server.url], capture_output=True, text=True, timeout=120)  # noqa: E731
    assert run("register", "--model-type", "embedding", "--file", str(spec)).returncode == 0
    launched = run("launch", "--model-type", "embedding", "--model-name", "cli-minilm")
    assert launched.returncode == 0 and launched.stdout == "cli-minilm\n", launched.stderr
    regs = run("registrations", "--model-type", "embedding").stdout
    assert any(line.split("\t")[:3] == ["cli-minilm", "custom", "384"] for line in regs.splitlines())
    wrong = run("generate", "--model-uid", "cli-minilm", "hi")
    assert wrong.returncode == 1 and "embedding model" in wrong.stderr
    assert run("terminate", "--model-uid", "cli-minilm").returncode == 0


def test_official_xinference_client_embeds(server: ServerProcess, minilm: str) -> None:
    from xinference_client import RESTfulClient

    client = RESTfulClient(server.url)
    model = client.get_model(minilm)
    result = model.create_embedding(["hello", "world"])
    assert len(result["data"]) == 2 and len(result["data"][0]["embedding"]) == 384


def test_an_llm_with_the_embed_ability_embeds_through_llama_cpp(server: ServerProcess, small_gguf: Path) -> None:
    """A GGUF LLM whose spec says ["chat", "embed"] answers /v1/embeddings with its own vectors (llama.cpp's
    embedding mode, mean pooling: the file says none), and still chats; without the ability, one line."""
    import httpx

    from tests.server.conftest import gguf_spec

    client = Client(server.url)
    spec = json.loads(gguf_spec("smol-embed", small_gguf, version=2, model_ability=["chat", "embed"]))
    client.register_model("LLM", json.dumps(spec))
    uid = client.launch_model(model_name="smol-embed", n_parallel=1)
    texts = ["The cat sat on the mat.", "A kitten rested on the rug.", "Quarterly revenue grew by 4%."]
    try:
        with httpx.Client(base_url=server.url, timeout=120) as h:
            got = h.post("/v1/embeddings", json={"model": uid, "input": texts})
            assert got.status_code == 200, got.text
            vectors = [item["embedding"] for item in got.json()["data"]]
            assert [len(v) for v in vectors] == [576] * 3  # SmolLM2 135M's hidden size
            assert all(abs(sum(x * x for x in v) - 1) < 1e-3 for v in vectors)
            assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2])
            assert got.json()["usage"]["prompt_tokens"] > 10
            # the worst inputs while another client's chat streams on the same model: one-line 400s, and the
            # stream goes on to its own end
            streamed: dict[str, Any] = {}

            def other_client() -> None:
                with httpx.Client(base_url=server.url, timeout=120) as other, other.stream(
                        "POST", "/v1/chat/completions", json={
                            "model": uid, "stream": True, "max_tokens": 60, "ignore_eos": True,
                            "messages": [{"role": "user", "content": "Tell me a story."}]}) as r:
                    lines = [line for line in r.iter_lines() if line.startswith("data: {")]
                streamed["finish"] = json.loads(lines[-1][6:])["choices"][0]["finish_reason"]

            thread = threading.Thread(target=other_client)
            thread.start()
            for worst, says in (("", "empty text"), (["a", ""], "empty text"), ([], "at least one text"),
                                ([[1, 2]], "texts only"), ("x", "dimensions")):
                body = {"model": uid, "input": worst, **({"dimensions": 10**6} if worst == "x" else {})}
                refused = h.post("/v1/embeddings", json=body)
                assert refused.status_code == 400 and says in refused.json()["detail"], refused.text
                assert "\n" not in refused.json()["detail"]
            thread.join(120)
            assert streamed["finish"] == "length"
            short = h.post("/v1/embeddings", json={"model": uid, "input": "x", "dimensions": 64}).json()
            assert len(short["data"][0]["embedding"]) == 64
            chat = h.post("/v1/chat/completions", json={"model": uid, "max_tokens": 4,
                                                        "messages": [{"role": "user", "content": "Hi"}]})
            assert chat.status_code == 200
        client.terminate_model(uid)
        spec["model_name"], spec["model_ability"] = "smol-no-embed", ["chat"]
        client.register_model("LLM", json.dumps(spec))
        uid = client.launch_model(model_name="smol-no-embed", n_parallel=1)
        with httpx.Client(base_url=server.url, timeout=60) as h:
            refused = h.post("/v1/embeddings", json={"model": uid, "input": "x"})
            assert refused.status_code == 400 and "\n" not in refused.json()["detail"], refused.text
    finally:
        for running in list(client.list_models()):
            if running.startswith("smol-"):
                client.terminate_model(running)
