"""Continuous batching for PyTorch models (transformers' own, xitui's sampler per request), against a real
server with the Gemma 3 safetensors: a request alone writes what `model.generate` writes; concurrent
requests each keep their own settings, stop words, log probabilities and cancellation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import ServerProcess
from xitui.client import Client

PROMPTS = ["Once upon a time,", "The capital of France is", "1, 2, 3, 4,", "My favourite food is"]


@pytest.fixture(scope="module")
def server(torch_gemma: tuple[ServerProcess, str]) -> ServerProcess:
    return torch_gemma[0]


@pytest.fixture(scope="module")
def batched(torch_gemma: tuple[ServerProcess, str]) -> str:
    """The shared transformers Gemma (tests/server/conftest.py), 4 slots."""
    return torch_gemma[1]


def test_a_request_alone_writes_what_generate_writes(server: ServerProcess, batched: str, gemma_pt_dir: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    desc = Client(server.url).describe_model(batched)
    assert desc["batching"] == "continuous (transformers), 4 requests at once" and desc["slots"] == 4
    tokenizer = AutoTokenizer.from_pretrained(gemma_pt_dir)
    model = AutoModelForCausalLM.from_pretrained(gemma_pt_dir, dtype=torch.float32)
    handle = Client(server.url).get_model(batched)
    for prompt in PROMPTS[:1]:
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
        out = model.generate(ids, max_new_tokens=16, min_new_tokens=16, do_sample=False)
        expected = tokenizer.decode(out[0][ids.shape[1]:], skip_special_tokens=True)
        got = handle.generate(prompt, {"max_tokens": 16, "temperature": 0, "ignore_eos": True})
        assert got["choices"][0]["text"] == expected and got["usage"]["completion_tokens"] == 16


def test_concurrent_requests_keep_their_own_settings(server: ServerProcess, batched: str) -> None:
    """Four at once: greedy with log probabilities, a stop word, a seeded sample (twice: the same text), and a
    JSON schema; each ends on its own terms, and the server saw them run together."""
    results: dict[str, dict] = {}
    configs = {
        "greedy": (PROMPTS[0], {"max_tokens": 12, "temperature": 0, "logprobs": 2, "ignore_eos": True}),
        "stop": (PROMPTS[2], {"max_tokens": 30, "temperature": 0, "stop": [" 9"]}),
        "seeded": (PROMPTS[3], {"max_tokens": 12, "temperature": 0.9, "seed": 11, "ignore_eos": True}),
        "json": ("Answer in JSON:", {"max_tokens": 60, "temperature": 0, "response_format": {
            "type": "json_schema", "json_schema": {"name": "c", "schema": {
                "type": "object", "additionalProperties": False, "required": ["city"],
                "properties": {"city": {"enum": ["Paris", "Rome"]}}}}}}),
    }

    def one(name: str) -> None:
        prompt, config = configs[name]
        results[name] = Client(server.url).get_model(batched).generate(prompt, config)

    threads = [threading.Thread(target=one, args=(name,)) for name in configs]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    assert Client(server.url).describe_model(batched)["running"] >= 2
    for thread in threads:
        thread.join(300)
    greedy = results["greedy"]["choices"][0]
    assert greedy["finish_reason"] == "length" and len(greedy["logprobs"]["tokens"]) == 12
    assert "".join(greedy["logprobs"]["tokens"]) == greedy["text"]
    assert all(len(top) == 2 for top in greedy["logprobs"]["top_logprobs"])
    stopped = results["stop"]["choices"][0]
    assert stopped["finish_reason"] == "stop" and stopped["text"].startswith(" 5, 6, 7, 8,") and " 9" not in stopped["text"]
    again = Client(server.url).get_model(batched).generate(*configs["seeded"])
    assert again["choices"][0]["text"] == results["seeded"]["choices"][0]["text"]
    import json

    assert json.loads(results["json"]["choices"][0]["text"])["city"] in ("Paris", "Rome")


def test_a_hung_up_stream_leaves_the_others_running(server: ServerProcess, batched: str) -> None:
    body = {"model": batched, "prompt": PROMPTS[0], "max_tokens": 200, "temperature": 0, "ignore_eos": True,
            "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/completions", json=body, timeout=120) as response:
        for n, _ in enumerate(response.iter_lines()):
            if n > 4:
                break  # hangs up mid-answer
    client = Client(server.url)
    deadline = time.monotonic() + 30
    while client.describe_model(batched)["metrics"]["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.describe_model(batched)["metrics"]["in_flight"] == 0
    answer = client.get_model(batched).generate(PROMPTS[1], {"max_tokens": 6, "temperature": 0})
    assert answer["usage"]["completion_tokens"] == 6
