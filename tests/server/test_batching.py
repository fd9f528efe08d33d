"""Continuous batching in the llama.cpp worker: concurrent requests share one batch, each ending on its own
terms; cancelled ones free their slot for the queue; a dead worker fails them all; one request alone gives
the text it gave before batching (real server, the bundled GGUFs: SmolLM2 where any model does, Gemma 3
where its text or its sliding window is what is tested)."""

from __future__ import annotations

import itertools
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import THREADS
from tests.server.conftest import ServerProcess, gguf_spec
from xitui.client import Client, ClientError

PROMPTS = ["The capital of France is", "Once upon a time,", "def fibonacci(n):", "1, 2, 3, 4,",
           "Roses are red,", "The sea is", "My favourite food is", "In 1492,"]


def launched(server: ServerProcess, gguf: Path, name: str, **launch: object) -> Client:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec(name, gguf))
    client.launch_model(model_name=name, **launch)
    return client


def test_eight_concurrent_requests_each_end_on_their_own_terms(server: ServerProcess, gguf_path: Path) -> None:
    client = launched(server, gguf_path, "batcher", n_parallel=8)
    assert client.describe_model("batcher")["slots"] == 8
    results: dict[int, dict] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            own = Client(server.url)
            stop = [", and"] if i == 4 else []
            results[i] = own.get_model("batcher").generate(
                PROMPTS[i], {"max_tokens": 10 + 3 * i, "temperature": 0, "stop": stop, "ignore_eos": i != 4})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    desc = client.describe_model("batcher")
    assert desc["running"] + desc["queued"] >= 1
    for thread in threads:
        thread.join(120)
    assert not errors, errors
    for i, answer in results.items():
        choice = answer["choices"][0]
        if i == 4:
            assert choice["finish_reason"] == "stop" and ", and" not in choice["text"], choice
        else:
            assert choice["finish_reason"] == "length" and answer["usage"]["completion_tokens"] == 10 + 3 * i
    assert results[3]["choices"][0]["text"].startswith(" 5, 6, 7")  # the counting prompt kept counting
    assert "return" in results[2]["choices"][0]["text"]  # and the code prompt kept coding
    client.terminate_model("batcher")


def test_a_cancelled_stream_frees_its_slot_for_the_queue(server: ServerProcess, small_gguf: Path) -> None:
    client = launched(server, small_gguf, "two-slots", n_parallel=2)
    config = {"max_tokens": 300, "temperature": 0, "ignore_eos": True, "stream": True}
    first = client.get_model("two-slots").generate("Once upon a time,", config)
    second = Client(server.url).get_model("two-slots").generate("The sea is", config)
    next(first)
    next(second)
    done: dict[str, str] = {}

    def queued() -> None:
        answer = Client(server.url).get_model("two-slots").generate("1, 2, 3,", {"max_tokens": 5, "temperature": 0})
        done["text"] = answer["choices"][0]["text"]

    waiter = threading.Thread(target=queued)
    waiter.start()
    deadline = time.monotonic() + 5
    while client.describe_model("two-slots")["queued"] != 1:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    first.close()  # the client hangs up: its slot goes to the queued request
    waiter.join(30)
    assert done["text"].startswith(" 4,")
    assert next(second)  # the other stream never stopped
    second.close()
    deadline = time.monotonic() + 3
    while client.describe_model("two-slots")["metrics"]["in_flight"]:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    client.terminate_model("two-slots")


def test_a_worker_killed_mid_batch_fails_every_request_in_it(server: ServerProcess, small_gguf: Path) -> None:
    client = launched(server, small_gguf, "doomed-batch", n_parallel=4)
    config = {"max_tokens": 300, "temperature": 0, "ignore_eos": True, "stream": True}
    streams = [Client(server.url).get_model("doomed-batch").generate(p, config) for p in PROMPTS[:4]]
    for stream in streams:
        next(stream)
    os.kill(client.describe_model("doomed-batch")["pid"], signal.SIGKILL)
    for stream in streams:
        with pytest.raises(ClientError, match=r"its worker died \(SIGKILL"):
            for _ in stream:
                pass
    client.terminate_model("doomed-batch")


def test_one_request_alone_gives_the_direct_librarys_greedy_text(server: ServerProcess, small_gguf: Path) -> None:
    """Every request goes through the batch engine, one slot or many: alone, it writes what llama-cpp-python
    writes for the same prompt, request after request (the engine reuses the cached start of the previous
    prompt, so a repeated prompt and one that extends it are in the sequence)."""
    import llama_cpp

    sequence = [*PROMPTS[:3], PROMPTS[0], PROMPTS[0] + " Paris, and"]
    direct = llama_cpp.Llama(model_path=str(small_gguf), n_ctx=2048, n_threads=THREADS, verbose=False)
    expected = [direct.create_completion(p, max_tokens=48, temperature=0)["choices"][0]["text"] for p in sequence]
    del direct
    for slots in (1, 4):
        client = launched(server, small_gguf, f"solo-{slots}", n_parallel=slots)
        texts = [client.get_model(f"solo-{slots}").generate(p, {"max_tokens": 48, "temperature": 0})["choices"][0]["text"]
                 for p in sequence]
        client.terminate_model(f"solo-{slots}")
        assert texts == expected, slots


def counts_on(text: str, start: int, count: int = 10) -> bool:
    """Whether `text` goes on counting from `start` (its first `count` numbers), as each stream below must."""
    numbers = [int(n) for n in re.findall(r"\d+", text)][:count]
    return len(numbers) == count and numbers == list(range(start, start + count))


def test_answers_that_outgrow_the_shared_cache_wait_and_are_never_mixed(server: ServerProcess, gguf_path: Path) -> None:
    """Four slots share a 256-token cache; four answers of 90 tokens need over 400 cells. The ones started
    last are put back and decoded again when there is room: every answer is whole and goes on counting from
    its own numbers (a cell written over by another stream would break the count)."""
    client = launched(server, gguf_path, "pooled", n_parallel=4, context_length=256)
    desc = client.describe_model("pooled")
    assert desc["slots"] == 4 and desc["kv_cells"] == 256 and desc["context_length"] == 256
    starts = [10, 300, 5000, 70000]
    config = {"max_tokens": 90, "temperature": 0, "ignore_eos": True}
    results: dict[int, dict] = {}

    def one(a: int) -> None:
        prompt = ", ".join(str(n) for n in range(a, a + 4)) + ","
        results[a] = Client(server.url).get_model("pooled").generate(prompt, config)

    threads = [threading.Thread(target=one, args=(a,)) for a in starts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(300)
    assert all(counts_on(results[a]["choices"][0]["text"], a + 4) for a in starts), results
    assert all(r["usage"]["completion_tokens"] == 90 for r in results.values())
    assert client.describe_model("pooled")["metrics"]["preempted"] >= 1
    client.terminate_model("pooled")


#: ~640 tokens of conversation: past gemma-3's 512-token sliding window.
WAVES = " ".join(f"The wave number {n} rolls in from the grey sea and breaks on the stones." for n in range(45))


@pytest.mark.parametrize("slots", [1, 4])
def test_a_prompt_after_a_long_conversation_gives_its_greedy_text(server: ServerProcess, gguf_path: Path,
                                                                  slots: int) -> None:
    """gemma-3 attends over a 512-token sliding window: after a sequence longer than that (a long answer, or
    as here a long conversation, which costs a prefill instead of 530 decoded tokens), the cache copied while
    idle no longer holds the prompt's first cells, and reusing them gave '[\n[\n[' instead."""
    name = f"long-{slots}"
    handle = launched(server, gguf_path, name, n_parallel=slots).get_model(name)
    messages = [{"role": "user", "content": "Tell me about the sea."}]
    greedy = {"max_tokens": 24, "temperature": 0}
    before = handle.chat(messages, generate_config=greedy)["choices"][0]["message"]["content"]
    longer = [*messages, {"role": "assistant", "content": before}, {"role": "user", "content": WAVES}]
    long = handle.chat(longer, generate_config={"max_tokens": 2})
    assert long["usage"]["prompt_tokens"] > 600, long["usage"]
    assert handle.chat(messages, generate_config=greedy)["choices"][0]["message"]["content"] == before


def test_each_slot_samples_with_its_own_parameters_and_seed(server: ServerProcess, small_gguf: Path) -> None:
    client = launched(server, small_gguf, "sampler", n_parallel=4)
    config = {"max_tokens": 24, "temperature": 0.9, "top_k": 20, "top_p": 0.9, "seed": 7, "repeat_penalty": 1.3,
              "presence_penalty": 0.4, "frequency_penalty": 0.4}
    results: dict[int, str] = {}

    def one(i: int, seed: int) -> None:
        answer = Client(server.url).get_model("sampler").generate("Once upon a time,", {**config, "seed": seed})
        results[i] = answer["choices"][0]["text"]

    threads = [threading.Thread(target=one, args=(i, 7 if i < 2 else 1000 + i)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 4 and all(results.values())
    assert len({results[2], results[3]} | {results[0]}) == 3  # other seeds, other stories
    with pytest.raises(ClientError, match="repeat_penalty") as caught:
        client.get_model("sampler").generate("x", {"repeat_penalty": 0})
    assert caught.value.status_code == 400
    assert client.describe_model("sampler")["state"] == "ready"
    client.terminate_model("sampler")


def test_the_config_sets_the_default_slots(tmp_path: Path, small_gguf: Path) -> None:
    (tmp_path / "config.toml").write_text("[server]\nn_parallel = 2\n")
    srv = ServerProcess(tmp_path)
    try:
        client = launched(srv, small_gguf, "configured")
        assert client.describe_model("configured")["slots"] == 2
        assert client.describe_model("configured")["estimate"]["slots"] == 2
    finally:
        srv.stop()


def test_a_chat_turn_while_others_run_gets_its_cells_back(server: ServerProcess, small_gguf: Path) -> None:
    """A finished answer's cells leave the shared cache while other streams run (they would slow every one of
    them) and are copied back for a prompt that starts with them: the next turn skips those tokens (OpenAI's
    cached_tokens says how many) and the model sees what it would see alone: its first token's likeliest
    choices and their log probabilities are llama-cpp-python's (within the 0.2 that a batch's arithmetic moves
    them, kept or decoded again; cells put back at wrong positions or from another sequence change them
    entirely)."""
    import llama_cpp

    client = launched(server, small_gguf, "kept", n_parallel=4)
    model = client.get_model("kept")
    other = model.generate(PROMPTS[2], {"max_tokens": 600, "temperature": 0, "ignore_eos": True, "stream": True})
    next(other)  # a long answer runs through both turns below
    first = model.generate(PROMPTS[0], {"max_tokens": 32, "temperature": 0})
    before = PROMPTS[0] + first["choices"][0]["text"]
    second = model.generate(before + " And then", {"max_tokens": 8, "temperature": 0, "logprobs": 3})
    assert client.describe_model("kept")["metrics"]["in_flight"] == 1, "the long answer ended too soon"
    direct = llama_cpp.Llama(model_path=str(small_gguf), n_ctx=2048, n_threads=THREADS, verbose=False, logits_all=True)
    expected = direct.create_completion(before + " And then", max_tokens=1, temperature=0,
                                        logprobs=3)["choices"][0]["logprobs"]["top_logprobs"][0]
    written = len(direct.tokenize(before.encode()))
    del direct
    got = second["choices"][0]["logprobs"]["top_logprobs"][0]
    assert max(got, key=got.get) == max(expected, key=expected.get) and set(got) == set(expected)
    assert all(abs(got[token] - expected[token]) < 0.3 for token in got), (got, expected)
    cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
    assert written - 3 <= cached < second["usage"]["prompt_tokens"], second["usage"]
    assert sum(1 for _ in itertools.islice(other, 100)) == 100  # the long answer goes on (then hangs up)
    other.close()
    client.terminate_model("kept")
