"""A worker killed mid-stream comes back, many concurrent streams, cancels, and failures named in the logs."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import ServerProcess, configured_server, gguf_spec
from tests.server.test_metrics import scrape, value
from tests.support.models import launched
from xitui.client import Client, ClientError
from xitui.client.autostart import alive

pytestmark = pytest.mark.alone  # (bounds how soon a dead worker is noticed and a stuck one killed)


def test_sixteen_concurrent_streams_all_complete(server: ServerProcess, small_gguf: Path) -> None:
    client = Client(server.url)
    with launched(client, "busy", gguf_spec("busy", small_gguf)) as uid:
        results: dict[int, str] = {}
        errors: list[BaseException] = []

        def one(i: int) -> None:
            try:
                own = Client(server.url)
                chunks = own.get_model(uid).generate(f"Count to {i}:", {"max_tokens": 16, "temperature": 0,
                                                                        "stream": True})
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


def test_a_client_that_goes_away_cancels_its_generation(server: ServerProcess, small_gguf: Path) -> None:
    client = Client(server.url)
    with launched(client, "cancelled", gguf_spec("cancelled", small_gguf)) as uid:
        stream = client.get_model(uid).generate("Once upon a time", {"max_tokens": 2000, "stream": True})
        next(stream)
        stream.close()  # drops the connection
        start = time.monotonic()
        # the worker stops that generation, so a new request is answered at once, not after 2000 tokens
        out = client.get_model(uid).generate("One, two,", {"max_tokens": 2, "temperature": 0})
        assert out["choices"][0]["text"]
        assert time.monotonic() - start < 5


def test_a_non_streaming_client_that_hangs_up_cancels_its_generation(server: ServerProcess, small_gguf: Path) -> None:
    import httpx

    client = Client(server.url)
    with launched(client, "hung-up", gguf_spec("hung-up", small_gguf)) as uid:
        body = {"model": uid, "prompt": "Once upon a time", "max_tokens": 2000, "ignore_eos": True}
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{server.url}/v1/completions", json=body, timeout=httpx.Timeout(5, read=1.0))
        start = time.monotonic()
        out = client.get_model(uid).generate("One, two,", {"max_tokens": 2, "temperature": 0})
        assert out["choices"][0]["text"]
        assert time.monotonic() - start < 5  # 2000 tokens would take about a minute
        assert client.describe_model(uid)["metrics"]["in_flight"] == 0


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


# --- a worker that dies comes back ---------------------------------------------------------------------


def wait_for(client: Client, uid: str, state: str, seconds: float = 60) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        desc = client.describe_model(uid)
        if desc["state"] == state:
            return desc
        assert time.monotonic() < deadline, (state, desc["state"], desc["error"])
        time.sleep(0.05)


def test_a_worker_that_dies_mid_stream_comes_back(server: ServerProcess, small_gguf: Path) -> None:
    """SIGSEGV while a stream is in flight: the stream ends with one clear line at once, the model comes back
    ready under the same uid, answers, and says so in describe, /metrics and both logs; SIGKILL (what the
    out-of-memory killer sends) during a plain request: a 503 that names it. Terminated, its series go."""
    client = Client(server.url)
    with launched(client, "phoenix", gguf_spec("phoenix", small_gguf)) as uid:
        pid = client.describe_model(uid)["pid"]
        stream = client.get_model(uid).generate("Once upon a time", {"max_tokens": 400, "stream": True})
        next(stream)
        os.kill(pid, signal.SIGSEGV)
        killed_at = time.monotonic()
        with pytest.raises(ClientError, match=r"^model 'phoenix': its worker died \(SIGSEGV\) while answering; "
                                              r"it is being restarted$"):
            for _ in stream:
                pass
        assert time.monotonic() - killed_at < 2.0
        desc = wait_for(client, uid, "ready")
        assert time.monotonic() - killed_at < 60
        assert desc["pid"] != pid and alive(desc["pid"]) and not alive(pid)
        assert desc["restarts"] == 1 and desc["last_crash"] == "SIGSEGV" and desc["error"] is None
        assert uid in client.list_models()
        assert client.get_model(uid).generate("One, two,", {"max_tokens": 3})["choices"][0]["text"]
        samples = scrape(server.url)
        assert value(samples, "xitui_worker_restarts_total", model=uid, cause="SIGSEGV") == 1
        assert value(samples, "xitui_model_ready", model=uid, model_name="phoenix", engine="llama.cpp") == 1
        model_log = (server.home / "logs" / f"{uid}.log").read_text()
        assert f"xitui server: its worker (pid {pid}) died: SIGSEGV, with 1 request(s) in flight; generate request " \
            in model_log
        assert "restarting it in 0.5 s (restart 1 of at most 5 within an hour)" in model_log
        assert f"xitui server: its worker is back (pid {desc['pid']}" in model_log
        server_log = (server.home / "test-server.log").read_text()
        assert f"xitui: model phoenix: its worker (pid {pid}) died: SIGSEGV" in server_log

        # a plain request whose worker the out-of-memory killer ends: a 503 with one line, and back again
        pid = desc["pid"]
        answer: list[httpx.Response] = []
        asking = threading.Thread(target=lambda: answer.append(httpx.post(
            f"{server.url}/v1/completions", json={"model": uid, "prompt": "Once upon a time", "max_tokens": 400,
                                                  "ignore_eos": True}, timeout=60)))
        asking.start()
        deadline = time.monotonic() + 10
        while not client.describe_model(uid)["metrics"]["in_flight"]:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
        asking.join(30)
        assert answer[0].status_code == 503, answer[0].text
        assert answer[0].json()["detail"] == ("model 'phoenix': its worker died (SIGKILL, probably the out-of-memory "
                                              "killer) while answering; it is being restarted")
        # a request sent while it restarts waits for it and is answered
        out = client.get_model(uid).generate("One, two,", {"max_tokens": 3})
        assert out["choices"][0]["text"]
        desc = wait_for(client, uid, "ready")
        assert desc["restarts"] == 2 and desc["last_crash"] == "SIGKILL, probably the out-of-memory killer"
        samples = scrape(server.url)
        assert value(samples, "xitui_worker_restarts_total", model=uid,
                     cause="SIGKILL, probably the out-of-memory killer") == 1

    time.sleep(0.5)
    assert uid not in client.list_models()
    samples = scrape(server.url)
    left = [(name, labels) for name, series in samples.items() for labels in series if ("model", uid) in labels]
    assert not left, left  # a terminated uid keeps no series
    assert value(samples, "xitui_unloads_total", reason="terminated") >= 1


@pytest.fixture(scope="module")
def fragile(tmp_path_factory: pytest.TempPathFactory, small_gguf: Path) -> Iterator[ServerProcess]:
    """A server that restarts a model's workers once an hour at most (server.max_restarts = 1)."""
    srv = configured_server(tmp_path_factory, "fragile-home", "[server]\nmax_restarts = 1\n")
    yield srv
    srv.stop()


def test_a_worker_that_dies_too_often_stays_in_error_and_its_request_is_named(fragile: ServerProcess,
                                                                                small_gguf: Path) -> None:
    """The same request in flight at two deaths is named in the logs as their likely cause; past
    server.max_restarts the model stays in error with the reason; a launch over it starts afresh."""
    client = Client(fragile.url)
    client.register_model("LLM", gguf_spec("fragile", small_gguf))
    uid = client.launch_model(model_name="fragile")
    poison = {"max_tokens": 400, "temperature": 0, "stream": True}
    pids = []
    for _ in range(2):
        pid = wait_for(client, uid, "ready")["pid"]
        pids.append(pid)
        stream = client.get_model(uid).generate("The poisoned prompt", poison)
        next(stream)
        os.kill(pid, signal.SIGSEGV)
        with pytest.raises(ClientError, match=r"died \(SIGSEGV\) while answering"):
            for _ in stream:
                pass
    desc = client.describe_model(uid)
    assert desc["state"] == "error" and desc["restarts"] == 1 and desc["last_crash"] == "SIGSEGV"
    assert desc["error"] == ("its worker crashed too often (2 times within an hour, server.max_restarts is 1; the "
                             "last: SIGSEGV) and is not restarted: terminate it and launch it again")
    time.sleep(1.0)  # nothing restarts it later either
    assert client.describe_model(uid)["state"] == "error" and not any(alive(p) for p in pids)
    answer = httpx.post(f"{fragile.url}/v1/completions", json={"model": uid, "prompt": "Hi", "max_tokens": 2})
    assert answer.status_code == 500 and "crashed too often" in answer.json()["detail"]
    server_log = (fragile.home / "test-server.log").read_text()
    named = [line for line in server_log.splitlines() if "likely their cause" in line]
    assert len(named) == 1, named
    assert "model fragile: the generate request " in named[0] and "'The poisoned prompt'" in named[0]
    assert "from 127.0.0.1:" in named[0]
    assert "likely their cause" in (fragile.home / "logs" / f"{uid}.log").read_text()
    # launched again over the failed one: it starts afresh
    assert client.launch_model(model_name="fragile") == uid
    desc = client.describe_model(uid)
    assert desc["state"] == "ready" and desc["restarts"] == 0
    client.terminate_model(uid)
    client.unregister_model("LLM", "fragile")


def test_workers_stopped_on_purpose_are_not_restarted(fragile: ServerProcess, small_gguf: Path) -> None:
    """Terminated, unloaded for idleness, or stopped by SIGTERM from outside: none of them comes back."""
    client = Client(fragile.url)
    client.register_model("LLM", gguf_spec("resting", small_gguf))
    terminated = client.launch_model(model_name="resting", model_uid="terminated")
    stopped = client.launch_model(model_name="resting", model_uid="stopped")
    idle = client.launch_model(model_name="resting", model_uid="idle", ttl="2s")
    pids = {uid: client.describe_model(uid)["pid"] for uid in (idle, terminated, stopped)}
    client.terminate_model(terminated)
    os.kill(pids[stopped], signal.SIGTERM)
    deadline = time.monotonic() + 15
    while idle in client.list_models():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    desc = wait_for(client, stopped, "error", 10)
    assert desc["error"] == "its worker was stopped by SIGTERM from outside the server; not restarted"
    time.sleep(2.0)  # longer than a first restart's wait
    running = client.list_models()
    assert terminated not in running and idle not in running and running[stopped]["state"] == "error"
    assert not any(alive(pid) for pid in pids.values())
    assert client.describe_model(stopped)["restarts"] == 0
    server_log = (fragile.home / "test-server.log").read_text()
    assert not [line for line in server_log.splitlines() if "restarting it" in line
                and any(f"model {uid}:" in line for uid in pids)]
    client.terminate_model(stopped)
    client.unregister_model("LLM", "resting")
