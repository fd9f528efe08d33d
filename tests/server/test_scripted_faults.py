"""Faults a client meets mid-answer, with a scripted model (backends/scripted.py): a request's own error ends its
stream alone, a client that hangs up stops its generation, an engine's failure ends its batch and the worker serves
on, a worker that dies comes back. The same with real weights: test_faults.py (slow)."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.support import servers
from tests.support.models import launched
from tests.support.specs import scripted_spec
from xitui.client import Client, ClientError

RULES = [
    {"match": "slowly", "reply": " tick", "repeat": 20, "delay": 0.02},
    {"match": "boom", "reply": "Half an", "error": "the model failed: scripted", "delay": 0.02},
    {"match": "refuse", "reply": "", "error": "the script refuses this", "status": 503},
    {"match": "forever", "reply": " tick", "repeat": 1_000_000, "delay": 0.01},
    {"match": "break", "reply": "", "fail": "the scripted engine broke"},
    {"reply": "ok"},
]


def spec(tmp_path_factory: pytest.TempPathFactory, name: str) -> str:
    return scripted_spec(name, tmp_path_factory.mktemp(name), RULES, abilities=["generate", "chat"])


@pytest.fixture(scope="module")
def pair(scripted: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A model that writes two answers at once."""
    with launched(Client(scripted.url), "pair", spec(tmp_path_factory, "pair"), model_engine="scripted",
                  n_parallel=2) as uid:
        yield uid


@pytest.fixture(scope="module")
def single(scripted: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A model that writes one answer at a time: a request that is not stopped holds up every other."""
    with launched(Client(scripted.url), "single", spec(tmp_path_factory, "single"), model_engine="scripted",
                  n_parallel=1) as uid:
        yield uid


def stream(server: servers.ServerProcess, uid: str, content: str, events: list[tuple[float, Any]]) -> None:
    """A streamed chat answer's events, each with when it came: a chunk, an error, or "[DONE]"."""
    body = {"model": uid, "messages": [{"role": "user", "content": content}], "stream": True}
    with httpx.stream("POST", f"{server.url}/v1/chat/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: "):
                data = line[6:]
                events.append((time.monotonic(), data if data == "[DONE]" else orjson.loads(data)))


def content(events: list[tuple[float, Any]]) -> str:
    return "".join(e["choices"][0]["delta"].get("content") or "" for _, e in events
                   if isinstance(e, dict) and e.get("choices"))


def ask(server: servers.ServerProcess, uid: str, content: str, timeout: float = 30) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/chat/completions", timeout=timeout,
                      json={"model": uid, "messages": [{"role": "user", "content": content}]})


def test_a_mid_stream_error_reads_as_itself_in_each_client(scripted, pair):
    """OpenAI's error event (the openai SDK raises it with its message, not "An error occurred during
    streaming"), with `detail` beside it (xinference-client and xitui's client raise with the line)."""
    import openai
    from xinference_client import RESTfulClient

    sdk = openai.OpenAI(base_url=f"{scripted.url}/v1", api_key="none", max_retries=0)
    with pytest.raises(openai.APIError) as raised:
        for _ in sdk.chat.completions.create(model=pair, messages=[{"role": "user", "content": "boom"}],
                                             stream=True):
            pass
    assert raised.value.message == "the model failed: scripted"
    with pytest.raises(Exception, match="the model failed: scripted"):
        for _ in RESTfulClient(scripted.url).get_model(pair).chat(
                messages=[{"role": "user", "content": "boom"}], generate_config={"stream": True}):
            pass
    with pytest.raises(ClientError) as plain:
        for _ in Client(scripted.url).get_model(pair).chat([{"role": "user", "content": "boom"}],
                                                           generate_config={"stream": True}):
            pass
    assert str(plain.value) == "the model failed: scripted"


def test_an_error_mid_stream_ends_that_stream_alone_with_an_error_chunk(scripted, pair):
    steady: list[tuple[float, Any]] = []
    other = threading.Thread(target=stream, args=(scripted, pair, "answer slowly", steady))
    other.start()
    deadline = time.monotonic() + 10
    while not content(steady):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    failing: list[tuple[float, Any]] = []
    stream(scripted, pair, "boom", failing)
    other.join(30)
    assert content(failing) == "Half an"
    errors = [e for _, e in failing if isinstance(e, dict) and "error" in e]
    assert errors == [{"error": {"message": "the model failed: scripted", "type": "server_error", "param": None,
                                 "code": None}, "detail": "the model failed: scripted"}]
    assert failing[-1][1] == "[DONE]"
    # the other stream went on past the error, to its whole answer and its end
    assert content(steady) == " tick" * 20
    assert steady[-2][1]["choices"][0]["finish_reason"] == "stop" and steady[-1][1] == "[DONE]"
    assert steady[-1][0] > failing[-1][0]
    assert not any("error" in e for _, e in steady if isinstance(e, dict))


def test_an_error_before_any_text_is_the_responses_status(scripted, pair):
    refused = ask(scripted, pair, "refuse")
    assert (refused.status_code, refused.json()["detail"]) == (503, "the script refuses this")
    streamed = httpx.post(f"{scripted.url}/v1/chat/completions", timeout=30, json={
        "model": pair, "messages": [{"role": "user", "content": "refuse"}], "stream": True})
    assert (streamed.status_code, streamed.json()["detail"]) == (503, "the script refuses this")


def test_a_client_that_hangs_up_stops_its_generation(scripted, single):
    """The model writes one answer at a time and this one would take hours: the next request is answered at
    once only if the hang-up stopped it, streamed or not."""
    client = Client(scripted.url)
    chunks = client.get_model(single).chat([{"role": "user", "content": "talk forever"}],
                                           generate_config={"stream": True})
    next(chunks)
    chunks.close()  # drops the connection
    start = time.monotonic()
    assert ask(scripted, single, "hi", timeout=10).json()["choices"][0]["message"]["content"] == "ok"
    with pytest.raises(httpx.ReadTimeout):
        ask(scripted, single, "talk forever", timeout=0.5)
    assert ask(scripted, single, "hi", timeout=10).json()["choices"][0]["message"]["content"] == "ok"
    assert time.monotonic() - start < 5
    assert client.describe_model(single)["metrics"]["in_flight"] == 0


def test_an_engine_that_fails_ends_its_batch_and_the_worker_serves_on(scripted, single):
    client = Client(scripted.url)
    pid = client.describe_model(single)["pid"]
    broken = ask(scripted, single, "break")
    assert broken.status_code == 500
    assert broken.json()["detail"] == "the model failed: RuntimeError: the scripted engine broke"
    assert ask(scripted, single, "hi").json()["choices"][0]["message"]["content"] == "ok"
    assert client.describe_model(single)["pid"] == pid  # the same worker, not a restarted one


def test_a_worker_that_dies_mid_stream_ends_it_with_one_line_and_comes_back(scripted, tmp_path_factory):
    client = Client(scripted.url)
    with launched(client, "phoenix", spec(tmp_path_factory, "phoenix"), model_engine="scripted") as uid:
        pid = client.describe_model(uid)["pid"]
        events: list[tuple[float, Any]] = []
        reader = threading.Thread(target=stream, args=(scripted, uid, "talk forever", events))
        reader.start()
        deadline = time.monotonic() + 10
        while not content(events):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(pid, signal.SIGKILL)
        reader.join(10)
        errors = [e["detail"] for _, e in events if isinstance(e, dict) and "error" in e]
        assert errors == ["model 'phoenix': its worker died (SIGKILL, probably the out-of-memory killer) while "
                          "answering; it is being restarted"]
        # a request sent while it restarts waits for it and is answered
        assert ask(scripted, uid, "hi").json()["choices"][0]["message"]["content"] == "ok"
        desc = client.describe_model(uid)
        assert desc["pid"] != pid and desc["restarts"] == 1 and desc["state"] == "ready"
