"""Rerank models end to end: a real cross-encoder (tests/model_files.reranker_dir) registered in Xinference's
custom rerank form, launched, and asked through plain HTTP, xinference-client, xitui's Client and the CLI."""

from __future__ import annotations

import json
import subprocess

import httpx
import pytest

from tests.conftest import xitui_cmd
from tests.model_files import HELD_OUT, reranker_dir
from tests.server.conftest import ServerProcess
from xitui.client import Client, ClientError

QUESTIONS = list(HELD_OUT)
PASSAGES = list(HELD_OUT.values())


@pytest.fixture(scope="module")
def reranker(server: ServerProcess) -> str:
    client = Client(server.url)
    spec = {"version": 2, "model_name": "tiny-reranker", "language": ["en"], "type": "normal", "max_tokens": 96,
            "model_specs": [{"model_format": "pytorch", "model_uri": str(reranker_dir()), "quantization": "none"}]}
    client.register_model("rerank", json.dumps(spec))
    return client.launch_model(model_name="tiny-reranker", model_type="rerank")


def test_plain_http_ranks_the_relevant_passage_first(server: ServerProcess, reranker: str) -> None:
    for q, question in enumerate(QUESTIONS):
        answer = httpx.post(f"{server.url}/v1/rerank", timeout=60,
                            json={"model": reranker, "query": question, "documents": PASSAGES})
        assert answer.status_code == 200, answer.text
        results = answer.json()["results"]
        assert results[0]["index"] == q, (question, results[:2])
        scores = [r["relevance_score"] for r in results]
        assert scores == sorted(scores, reverse=True) and sorted(r["index"] for r in results) == list(range(8))
    top = httpx.post(f"{server.url}/v1/rerank", timeout=60, json={
        "model": reranker, "query": QUESTIONS[2], "documents": PASSAGES, "top_n": 2, "return_documents": True,
        "return_len": True}).json()
    assert len(top["results"]) == 2 and top["results"][0]["document"] == {"text": PASSAGES[2]}
    assert top["meta"]["tokens"]["input_tokens"] > 100


def test_xinference_client_and_xituis_client_rerank(server: ServerProcess, reranker: str) -> None:
    from xinference_client import RESTfulClient

    theirs = RESTfulClient(server.url).get_model(reranker).rerank(PASSAGES, QUESTIONS[5], top_n=3,
                                                                   return_documents=True)
    assert theirs["results"][0]["index"] == 5 and theirs["results"][0]["document"]["text"] == PASSAGES[5]
    ours = Client(server.url).get_model(reranker).rerank(PASSAGES, QUESTIONS[5], top_n=3)
    assert [r["index"] for r in ours["results"]] == [r["index"] for r in theirs["results"]]
    assert Client(server.url).describe_model(reranker)["model_ability"] == ["rerank"]


def test_the_cli_reads_documents_from_arguments_or_stdin(server: ServerProcess, reranker: str) -> None:
    argv = [*xitui_cmd(), "rerank", "-u", reranker, QUESTIONS[7], "-e", server.url]
    shown = subprocess.run([*argv, *PASSAGES[:4], PASSAGES[7]], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.splitlines()[0].split("  ", 2)[1:] == ["4", PASSAGES[7]]
    piped = subprocess.run([*argv, "--json", "--top-n", "1"], input="\n".join(PASSAGES) + "\n", capture_output=True,
                           text=True, timeout=60)
    assert json.loads(piped.stdout)["results"][0]["index"] == 7


def test_a_rerank_model_refuses_other_routes_and_bad_bodies(server: ServerProcess, reranker: str) -> None:
    embed = httpx.post(f"{server.url}/v1/embeddings", json={"model": reranker, "input": "x"}, timeout=30)
    assert embed.status_code == 400 and "rerank" in embed.json()["detail"]
    for body in ({"model": reranker, "query": "q", "documents": []},
                 {"model": reranker, "query": "", "documents": ["a"]},
                 {"model": reranker, "query": "q", "documents": ["a"], "top_n": 0}):
        answer = httpx.post(f"{server.url}/v1/rerank", json=body, timeout=30)
        assert answer.status_code == 400, body
    with pytest.raises(ClientError) as caught:
        Client(server.url).register_model("rerank", json.dumps({"model_name": "gguf-rr", "model_specs": [
            {"model_format": "ggufv2", "model_id": "a/b"}]}))
    assert caught.value.status_code == 400 and "rerank models use 'pytorch'" in str(caught.value)


def test_the_cli_names_a_rerank_model_for_what_it_is(server: ServerProcess, reranker: str) -> None:
    """generate and embed on a rerank model: one line saying what it is and which command asks it."""
    for command, said in (("generate", f"error: model {reranker!r} is a rerank model: use `xitui rerank`"),
                          ("embed", f"error: model {reranker!r} is not an embedding model (see `xitui list`)")):
        done = subprocess.run([*xitui_cmd(), command, "-u", reranker, "-e", server.url, "some text"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1 and done.stderr.strip() == said, done.stderr
