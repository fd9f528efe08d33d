"""A worker killed mid-stream, many concurrent streams, and a relaunch after the crash."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from tests.server.conftest import ServerProcess, gguf_spec
from xitui.client import Client, ClientError
from xitui.client.autostart import alive


def test_sigkill_mid_stream_fails_the_request_marks_error_and_relaunch_works(server: ServerProcess, gguf_path: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("doomed", gguf_path))
    uid = client.launch_model(model_name="doomed")
    pid = client.describe_model(uid)["pid"]
    stream = client.get_model(uid).generate("Once upon a time", {"max_tokens": 400, "stream": True})
    next(stream)
    os.kill(pid, signal.SIGKILL)
    killed_at = time.monotonic()
    with pytest.raises(ClientError, match="killed by signal 9"):
        for _ in stream:
            pass
    while client.describe_model(uid)["state"] != "error":
        assert time.monotonic() - killed_at < 1.0
        time.sleep(0.01)
    desc = client.describe_model(uid)
    assert "signal 9" in desc["error"]
    with pytest.raises(ClientError, match="doomed"):
        client.get_model(uid).generate("x", {"max_tokens": 2})
    # the server is fine and the same uid launches again over the failed one
    assert client.status()["status"] == "ok"
    assert client.launch_model(model_name="doomed") == uid
    assert client.get_model(uid).generate("One, two,", {"max_tokens": 3})["choices"][0]["text"]
    new_pid = client.describe_model(uid)["pid"]
    client.terminate_model(uid)
    time.sleep(0.2)
    assert not alive(new_pid)  # terminate freed the process
    client.unregister_model("LLM", "doomed")


def test_sixteen_concurrent_streams_all_complete(server: ServerProcess, gguf_path: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("busy", gguf_path))
    uid = client.launch_model(model_name="busy")
    results: dict[int, str] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            own = Client(server.url)
            chunks = own.get_model(uid).generate(f"Count to {i}:", {"max_tokens": 16, "temperature": 0, "stream": True})
            pieces = [c["choices"][0]["text"] for c in chunks]
            results[i] = "".join(pieces)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert len(results) == 16 and all(results.values())
    # greedy decoding: the same prompt alone gives the same text as under load
    alone = client.get_model(uid).generate("Count to 3:", {"max_tokens": 16, "temperature": 0})
    assert alone["choices"][0]["text"] == results[3]
    metrics = client.describe_model(uid)["metrics"]
    assert metrics["requests"] == 17 and metrics["in_flight"] == 0
    client.terminate_model(uid)
    client.unregister_model("LLM", "busy")


def test_a_client_that_goes_away_cancels_its_generation(server: ServerProcess, gguf_path: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("cancelled", gguf_path))
    uid = client.launch_model(model_name="cancelled")
    stream = client.get_model(uid).generate("Once upon a time", {"max_tokens": 2000, "stream": True})
    next(stream)
    stream.close()  # drops the connection
    start = time.monotonic()
    # the worker stops that generation, so a new request is answered at once, not after 2000 tokens
    out = client.get_model(uid).generate("One, two,", {"max_tokens": 2, "temperature": 0})
    assert out["choices"][0]["text"]
    assert time.monotonic() - start < 5
    client.terminate_model(uid)
    client.unregister_model("LLM", "cancelled")


def test_a_non_streaming_client_that_hangs_up_cancels_its_generation(server: ServerProcess, gguf_path: Path) -> None:
    import httpx

    client = Client(server.url)
    client.register_model("LLM", gguf_spec("hung-up", gguf_path))
    uid = client.launch_model(model_name="hung-up")
    body = {"model": uid, "prompt": "Once upon a time", "max_tokens": 2000, "ignore_eos": True}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{server.url}/v1/completions", json=body, timeout=httpx.Timeout(5, read=1.0))
    start = time.monotonic()
    out = client.get_model(uid).generate("One, two,", {"max_tokens": 2, "temperature": 0})
    assert out["choices"][0]["text"]
    assert time.monotonic() - start < 5  # 2000 tokens would take about a minute
    assert client.describe_model(uid)["metrics"]["in_flight"] == 0
    client.terminate_model(uid)
    client.unregister_model("LLM", "hung-up")


def test_terminate_during_launch_answers_the_waiting_launch(server: ServerProcess) -> None:
    import json

    from tests.model_files import minilm_dir

    client = Client(server.url)
    client.register_model("embedding", json.dumps({"model_name": "slow-start", "dimensions": 384,
                                                   "max_tokens": 256, "language": ["en"],
                                                   "model_uri": str(minilm_dir())}))
    outcome: list[BaseException | str] = []

    def launch() -> None:
        try:
            outcome.append(Client(server.url).launch_model(model_name="slow-start", model_type="embedding"))
        except BaseException as exc:  # noqa: BLE001 - checked below
            outcome.append(exc)

    waiting = threading.Thread(target=launch)
    waiting.start()
    deadline = time.monotonic() + 10
    while (client.list_models().get("slow-start") or {}).get("pid") is None:  # its worker has started
        assert time.monotonic() < deadline
        time.sleep(0.02)
    pid = client.describe_model("slow-start")["pid"]
    start = time.monotonic()
    client.terminate_model("slow-start")
    assert time.monotonic() - start < 2  # a loading worker is killed, not waited for
    waiting.join(10)
    assert isinstance(outcome[0], ClientError) and "terminated while launching" in str(outcome[0])
    assert not alive(pid)
    assert "slow-start" not in client.list_models()
    client.unregister_model("embedding", "slow-start")


def test_a_model_that_cannot_load_says_why_in_both_logs(server: ServerProcess, tmp_path: Path) -> None:
    """A launch whose worker fails to load: the client gets the reason, the server's log has the failure and
    the worker's log the worker's own line about it (an operator reads the logs, not the client's terminal)."""
    import json

    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(os.urandom(1000))
    client = Client(server.url)
    client.register_model("LLM", json.dumps({
        "version": 2, "context_length": 2048, "model_name": "cannot-load", "model_lang": ["en"],
        "model_ability": ["generate"], "model_family": "other",
        "model_specs": [{"model_format": "pytorch", "model_size_in_billions": 1, "quantization": "none",
                         "model_id": "x/y", "model_uri": f"file://{folder}"}]}))
    with pytest.raises(ClientError, match=f"could not launch cannot-load: transformers could not load {folder}"):
        client.launch_model(model_name="cannot-load")
    assert f"xitui: model cannot-load failed to launch: transformers could not load {folder}" in \
        (server.home / "test-server.log").read_text()
    assert f": could not load cannot-load: transformers could not load {folder}" in \
        (server.home / "logs" / "cannot-load.log").read_text()
    client.unregister_model("LLM", "cannot-load")
