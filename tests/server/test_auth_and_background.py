"""API keys, refusing an open bind without one, the background server and `xitui stop`."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import xitui_cmd
from tests.server.conftest import ServerProcess, free_port
from xitui.client import Client, ClientError
from xitui.client.autostart import alive

pytestmark = pytest.mark.alone  # (bounds how soon `xitui stop` ends the server)


def test_api_key_is_demanded_on_every_route_but_the_probe(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, api_key="s3cret")
    try:
        assert httpx.get(f"{srv.url}/v1/cluster/auth").json() == {"auth": True}
        for path in ("/v1/models", "/status", "/v1/model_registrations/LLM", "/openapi.json"):
            r = httpx.get(f"{srv.url}{path}")
            assert r.status_code == 401 and "API key" in r.json()["detail"]
            r = httpx.get(f"{srv.url}{path}", headers={"Authorization": "Bearer wrong"})
            assert r.status_code == 401
        with pytest.raises(ClientError, match="API key"):
            Client(srv.url).list_models()
        assert Client(srv.url, api_key="s3cret").list_models() == {}
        # Anthropic's SDK and Claude Code send the key as x-api-key
        assert httpx.get(f"{srv.url}/v1/models", headers={"x-api-key": "s3cret"}).status_code == 200
        r = httpx.get(f"{srv.url}/v1/models", headers={"x-api-key": "s3cre"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        anthropic = pytest.importorskip("anthropic")
        with pytest.raises(anthropic.AuthenticationError, match="wrong API key"):
            anthropic.Anthropic(base_url=srv.url, api_key="nope", max_retries=0).messages.create(
                model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}])

        from xinference_client import RESTfulClient

        official = RESTfulClient(srv.url, api_key="s3cret")
        assert official.list_models() == {}
        names = [r["model_name"] for r in official.list_model_registrations(model_type="LLM")]
        assert "llama-2-chat" in names
        proc = subprocess.run([*xitui_cmd(), "list", "-e", srv.url], capture_output=True, text=True)
        assert proc.returncode == 1 and "API key" in proc.stderr
        proc = subprocess.run([*xitui_cmd(), "list", "-e", srv.url, "--api-key", "s3cret"], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    finally:
        srv.stop()


def test_binding_a_public_address_without_a_key_is_refused() -> None:
    proc = subprocess.run([*xitui_cmd(), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1
    assert "without an API key" in proc.stderr and "Traceback" not in proc.stderr


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path)
    try:
        proc = subprocess.run([*xitui_cmd(), "serve", "--port", str(srv.port)], capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 1 and "cannot listen" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        srv.stop()


def test_racing_commands_start_one_background_server_and_stop_ends_it_quickly(xitui_home: Path,
                                                                             tmp_path: Path) -> None:
    """Started from a folder that holds a directory named `xitui` (a clone's parent): the server and its
    workers import the installed package, not that folder (it died with "cannot import name '__version__'").
    With two models running, `xitui stop` ends the workers, the warm worker and the server in under 1.5 s
    (3.4 s before), and no worker is logged as killed by a signal."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {**os.environ, "XITUI_ENDPOINT": endpoint}
    (tmp_path / "xitui").mkdir()
    procs = [subprocess.Popen([*xitui_cmd(), "registrations", "--json"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for _ in range(2)]
    outputs = [p.communicate(timeout=60) for p in procs]
    try:
        assert all(p.returncode == 0 for p in procs), outputs
        starts = sum("starting a background xitui server" in err for _, err in outputs)
        assert starts == 1, outputs
        info = json.loads((xitui_home / "server.json").read_text())
        assert info["port"] == int(endpoint.rsplit(":", 1)[1])
        wanted = ["xitui.server", "--host", "127.0.0.1", "--port", str(info["port"])]
        servers = [p.pid for p in psutil.process_iter(["cmdline"])
                   if p.info["cmdline"] and p.info["cmdline"][-5:] == wanted]
        assert servers == [info["pid"]]
        # its workers start there too: a model launched, asked and terminated
        small = subprocess.run([*xitui_cmd(), "launch", "-n", "demo-smollm2-135m", "-u", "from-anywhere"], env=env,
                               capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert small.returncode == 0, small.stderr
        said = subprocess.run([*xitui_cmd(), "generate", "-u", "from-anywhere", "--max-tokens", "4"], input="Hello",
                              env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
        assert said.returncode == 0 and said.stdout.strip(), said.stderr
        vectors = subprocess.run([*xitui_cmd(), "launch", "-n", "demo-minilm", "-t", "embedding"], env=env,
                                 capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert vectors.returncode == 0, vectors.stderr
        running = psutil.Process(info["pid"]).children(recursive=True)
        # a third command finds it running and says nothing about starting
        third = subprocess.run([*xitui_cmd(), "list"], env=env, capture_output=True, text=True, timeout=30)
        assert third.returncode == 0 and "starting" not in third.stderr
    finally:
        began = time.monotonic()
        stop = subprocess.run([*xitui_cmd(), "stop"], env=env, capture_output=True, text=True, timeout=30)
        took = time.monotonic() - began
    assert stop.returncode == 0 and f"pid {info['pid']}" in stop.stderr
    assert not alive(info["pid"]) and not [p.pid for p in running if alive(p.pid)]
    assert len(running) >= 3 and took < 1.5, (len(running), took)  # two workers and the warm one
    log = (xitui_home / "server.log").read_text()
    assert "signal" not in log.lower(), log[-2000:]
    assert not (xitui_home / "server.json").exists()
    again = subprocess.run([*xitui_cmd(), "stop"], env=env, capture_output=True, text=True, timeout=30)
    assert "no background server" in again.stderr


def test_client_without_autostart_reports_an_unreachable_server() -> None:
    with pytest.raises(Exception, match="no server answers"):
        Client(f"http://127.0.0.1:{free_port()}").list_models()
