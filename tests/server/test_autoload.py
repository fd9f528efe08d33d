"""Load on request (server.autoload): a request naming a registered model that is not running launches it."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import xitui_cmd
from tests.server.conftest import ServerProcess, configured_server, gguf_spec
from tests.support.models import launched
from xitui.client import Client, ClientError

BODY = {"prompt": "The capital of France is", "max_tokens": 4, "temperature": 0}


@pytest.fixture(scope="module")
def capped(tmp_path_factory: pytest.TempPathFactory, small_gguf: Path) -> Iterator[ServerProcess]:
    """A server that runs at most one model at a time (server.max_loaded = 1)."""
    srv = configured_server(tmp_path_factory, "capped-home", "[server]\nmax_loaded = 1\n")
    yield srv
    srv.stop()


def complete(server: ServerProcess, model: str, timeout: float = 120) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/completions", json={"model": model, **BODY}, timeout=timeout)


def test_a_request_loads_a_registered_model_once_for_many(server: ServerProcess, small_gguf: Path) -> None:
    """Eight first requests at once: one launch (a second would be refused as a uid in use), eight answers."""
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("on-request", small_gguf))
    listed = {m["id"]: m for m in httpx.get(f"{server.url}/v1/models").json()["data"]}
    assert listed["on-request"]["loaded"] is False and listed["on-request"]["state"] == "loads on request"
    assert "on-request" in client.loads_on_request() and "on-request" not in client.list_models()
    shown = subprocess.run([*xitui_cmd(), "list", "-e", server.url], capture_output=True, text=True, timeout=60)
    assert "on-request" in shown.stderr.split("loads on request: ")[1].split("\n")[0].split(", ")

    answers: list[httpx.Response] = []
    threads = [threading.Thread(target=lambda: answers.append(complete(server, "on-request"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers if a.status_code != 200]
    running = client.list_models()
    assert running["on-request"]["state"] == "ready" and running["on-request"]["metrics"]["requests"] == 8
    assert len(running["on-request"]["replicas"]) == 1
    listed = {m["id"]: m for m in httpx.get(f"{server.url}/v1/models").json()["data"]}
    assert listed["on-request"]["loaded"] is True  # one entry: the running model, no registered twin
    client.terminate_model("on-request")


def test_the_cli_and_client_load_a_model_that_loads_on_request(server: ServerProcess, small_gguf: Path) -> None:
    """What `xitui list` says loads on request does so from xitui's own front ends too: `xitui generate` and
    `xitui chat` name it and get their answer; the Client's handle for it is a chat handle before it runs."""
    from xitui.client.handles import ChatModelHandle

    client = Client(server.url)
    client.register_model("LLM", gguf_spec("cli-on-request", small_gguf))
    assert isinstance(client.get_model("cli-on-request"), ChatModelHandle)
    assert "cli-on-request" not in client.list_models()  # a handle loads nothing: its first request does
    generated = subprocess.run([*xitui_cmd(), "generate", "-u", "cli-on-request", "-e", server.url, "--max-tokens",
                                "4", "--temperature", "0"], input="The capital of France is", capture_output=True,
                               text=True, timeout=120)
    assert generated.returncode == 0 and generated.stdout.strip(), generated.stderr
    assert client.list_models()["cli-on-request"]["state"] == "ready"
    client.terminate_model("cli-on-request")
    chatted = subprocess.run([*xitui_cmd(), "chat", "-u", "cli-on-request", "-e", server.url, "--max-tokens", "4",
                              "--no-save"], input="Hello", capture_output=True, text=True, timeout=120)
    assert chatted.returncode == 0 and chatted.stdout.strip(), chatted.stderr
    client.terminate_model("cli-on-request")
    unknown = subprocess.run([*xitui_cmd(), "generate", "-u", "never-registered", "-e", server.url, "hi"],
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1 and "'never-registered' is not running" in unknown.stderr


def test_a_model_unloaded_for_idling_loads_again_with_its_settings(server: ServerProcess, small_gguf: Path) -> None:
    client = Client(server.url)
    with launched(client, "comes-back", gguf_spec("comes-back", small_gguf), context_length=1024, ttl=1):
        deadline = time.monotonic() + 30
        while "comes-back" in client.list_models():
            assert time.monotonic() < deadline, "the ttl did not unload it"
            time.sleep(0.3)
        assert complete(server, "comes-back").status_code == 200
        desc = client.describe_model("comes-back")
        assert desc["context_length"] == 1024  # the remembered launch, not the spec's 2048


def test_a_request_for_a_model_that_cannot_fit_is_a_409(server: ServerProcess, small_gguf: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("too-big-on-request", small_gguf, context_length=10_000_000))
    answer = complete(server, "too-big-on-request")
    assert answer.status_code == 409
    assert "too-big-on-request needs about" in answer.json()["detail"]
    assert "too-big-on-request" not in client.list_models()


def test_wrong_kind_and_unknown_names_are_refused_before_loading(server: ServerProcess, small_gguf: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("text-only", small_gguf, model_ability=["generate"]))
    chat = httpx.post(f"{server.url}/v1/chat/completions", timeout=30,
                      json={"model": "text-only", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 400 and "cannot chat" in chat.json()["detail"]
    embed = httpx.post(f"{server.url}/v1/embeddings", json={"model": "text-only", "input": "hi"}, timeout=30)
    assert embed.status_code == 400 and "/v1/completions" in embed.json()["detail"]
    assert complete(server, "never-registered").status_code == 404
    # a builtin whose files would come from the Hub is not downloaded because some request named it
    builtin = complete(server, "llama-2-chat", timeout=10)
    assert builtin.status_code == 404 and "loads on request" in builtin.json()["detail"]
    assert "text-only" not in client.list_models()


def test_xinference_client_still_lists_running_models_only(server: ServerProcess, small_gguf: Path) -> None:
    from xinference_client import RESTfulClient

    client = Client(server.url)
    client.register_model("LLM", gguf_spec("xi-listed", small_gguf))
    assert "xi-listed" not in RESTfulClient(server.url).list_models()
    client.launch_model(model_name="xi-listed")
    assert "xi-listed" in RESTfulClient(server.url).list_models()
    client.terminate_model("xi-listed")


def test_max_loaded_unloads_the_least_recently_used_idle_model(capped: ServerProcess, small_gguf: Path) -> None:
    client = Client(capped.url)
    for name in ("first", "second"):
        client.register_model("LLM", gguf_spec(name, small_gguf))
    assert complete(capped, "first").status_code == 200
    assert complete(capped, "second").status_code == 200
    assert list(client.list_models()) == ["second"]
    gone = complete(capped, "first")  # and back: "second" makes room in turn
    assert gone.status_code == 200 and list(client.list_models()) == ["first"]
    client.terminate_model("first")


def test_without_autoload_a_model_that_is_not_running_is_a_404(tmp_path: Path, small_gguf: Path) -> None:
    (tmp_path / "config.toml").write_text("[server]\nautoload = false\n")
    srv = ServerProcess(tmp_path)
    try:
        Client(srv.url).register_model("LLM", gguf_spec("manual", small_gguf))
        answer = complete(srv, "manual")
        assert answer.status_code == 404 and "is not running" in answer.json()["detail"]
        assert [m["id"] for m in httpx.get(f"{srv.url}/v1/models").json()["data"]] == []
        assert json.loads(httpx.get(f"{srv.url}/v1/models").text)["object"] == "list"
        with pytest.raises(ClientError, match="is not running"):
            Client(srv.url).get_model("manual")
    finally:
        srv.stop()
