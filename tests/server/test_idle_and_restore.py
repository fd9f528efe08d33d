"""Idle unload by time to live, and models that come back when the server starts again."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest

from tests.server.conftest import ServerProcess, gguf_spec
from xitui.client import Client, ClientError
from xitui.core.units import human_duration, parse_duration

pytestmark = pytest.mark.alone  # (bounds how soon an idle model is unloaded)


def _wait_gone(client: Client, uid: str, within: float) -> float:
    start = time.monotonic()
    while uid in client.list_models():
        assert time.monotonic() - start < within, f"{uid} was not unloaded within {within} s"
        time.sleep(0.1)
    return time.monotonic() - start


def test_a_model_idle_past_its_ttl_is_unloaded_and_says_so(server: ServerProcess, small_gguf: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("sleepy", small_gguf))
    uid = client.launch_model(model_name="sleepy", ttl="3s")
    client.get_model(uid).generate("Hello", {"max_tokens": 2})
    desc = client.describe_model(uid)
    assert desc["ttl"] == 3 and desc["unload_at"] == pytest.approx(desc["idle_since"] + 3)
    pid = desc["pid"]
    # a request in the meantime keeps it loaded: idle time starts again at its end
    time.sleep(2)
    client.get_model(uid).generate("Hello", {"max_tokens": 2})
    waited = _wait_gone(client, uid, within=6)
    assert waited >= 2.0
    with pytest.raises(ClientError) as caught:
        client.describe_model(uid)
    assert caught.value.status_code == 404
    assert re.search(r"was unloaded after [34]s idle \(its ttl is 3s\)", str(caught.value))
    deadline = time.monotonic() + 5  # the worker's memory is freed: its process has exited
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    log = (server.home / "test-server.log").read_text()
    assert re.search(r"model sleepy was unloaded after [34]s idle", log)
    # a request naming it loads it again (server.autoload), with the settings it was launched with: its handle
    # is had while it is unloaded, and its first request loads it
    client.get_model(uid).generate("x", {"max_tokens": 1})
    assert client.describe_model(uid)["ttl"] == 3
    client.terminate_model(uid)
    # launching it again brings it back, with no trace of the unload
    assert client.launch_model(model_name="sleepy", ttl=-1) == uid
    assert client.describe_model(uid)["unload_at"] is None
    client.terminate_model(uid)


def test_ttl_zero_unloads_once_idle_and_a_bad_ttl_is_a_400(server: ServerProcess, small_gguf: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("eager", small_gguf))
    with pytest.raises(ClientError, match="ttl: 'soon' is not a duration") as caught:
        client.launch_model(model_name="eager", ttl="soon")
    assert caught.value.status_code == 400
    uid = client.launch_model(model_name="eager", ttl=0)
    _wait_gone(client, uid, within=3)


def test_the_config_ttl_is_the_default(tmp_path: Path, small_gguf: Path) -> None:
    (tmp_path / "config.toml").write_text('[server]\nttl = "2s"\n')
    srv = ServerProcess(tmp_path)
    try:
        client = Client(srv.url)
        client.register_model("LLM", gguf_spec("defaulted", small_gguf))
        client.register_model("LLM", gguf_spec("kept", small_gguf))
        client.launch_model(model_name="defaulted")
        client.launch_model(model_name="kept", ttl="never")
        _wait_gone(client, "defaulted", within=5)
        time.sleep(1)
        assert client.describe_model("kept")["state"] == "ready"
    finally:
        srv.stop()


def test_marked_models_come_back_after_a_restart_with_their_settings(tmp_path: Path, small_gguf: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    shutil.copy(small_gguf, files / small_gguf.name)
    home = tmp_path / "home"
    home.mkdir()
    srv = ServerProcess(home)
    try:
        client = Client(srv.url)
        client.register_model("LLM", gguf_spec("back", files / small_gguf.name), persist=True)
        client.register_model("LLM", gguf_spec("gone", files / small_gguf.name), persist=True)
        client.register_model("LLM", gguf_spec("once", files / small_gguf.name), persist=True)
        client.launch_model(model_name="back", model_uid="back-1", context_length=1024, ttl="1h", restore=True)
        client.launch_model(model_name="gone", restore=True, context_length=512)
        client.launch_model(model_name="once")
        listed = client.list_models()
        assert listed["back-1"]["restore"] is True and listed["once"]["restore"] is False
        remembered = json.loads((home / "launches.json").read_text())["models"]
        assert remembered["back-1"]["request"]["context_length"] == 1024 and remembered["once"]["restore"] is False
    finally:
        srv.stop()

    srv = ServerProcess(home)
    try:
        client = Client(srv.url)
        deadline = time.monotonic() + 30
        while any(e["result"] == "pending" for e in client.status()["restored"]) or not client.status()["restored"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        models = client.list_models()
        assert set(models) == {"back-1", "gone"}  # "once" was not marked
        back = models["back-1"]
        assert back["state"] == "ready" and back["context_length"] == 1024 and back["ttl"] == 3600
        assert client.get_model("back-1").generate("One, two,", {"max_tokens": 3})["choices"][0]["text"]
        # the user terminates one: it stays down at the next start
        client.terminate_model("gone")
    finally:
        srv.stop()

    (files / small_gguf.name).unlink()  # the model file disappears
    srv = ServerProcess(home)
    try:
        client = Client(srv.url)
        deadline = time.monotonic() + 30
        while not client.status()["restored"] or client.status()["restored"][0]["result"] == "pending":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        restored = client.status()["restored"]
        assert [(e["model_uid"], e["result"]) for e in restored] == [("back-1", "error")]
        assert "model file not found" in restored[0]["error"]
        models = client.list_models()
        assert list(models) == ["back-1"]
        assert models["back-1"]["state"] == "error" and "model file not found" in models["back-1"]["error"]
        assert models["back-1"]["restore"] is True
        assert "could not restore model back-1" in (home / "test-server.log").read_text()
        assert client.status()["status"] == "ok"  # the server is up all the same
    finally:
        srv.stop()


def test_durations_read_as_users_write_them() -> None:
    assert parse_duration("10m") == 600 and parse_duration("1h30m") == 5400 and parse_duration(90) == 90
    assert parse_duration("0") == 0 and parse_duration(-1) is None and parse_duration("never") is None
    assert parse_duration("-1") is None and parse_duration("2d") == 172800
    for bad in ("soon", "10x", "", "m", True):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert human_duration(45) == "45s" and human_duration(600) == "10m" and human_duration(3900) == "1h05m"
