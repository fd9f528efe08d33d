"""Web pages cannot use the local server: Host and Origin checks, CORS only when asked, JSON only, size limits."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.server.conftest import ServerProcess, gguf_spec
from xitui.client import Client
from xitui.server.edge.guard import Policy, split_host

ALLOWED_ORIGIN = "http://localhost:5173"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, small_gguf: Path) -> Iterator[tuple[ServerProcess, str]]:
    """A server that also serves `models.example.test` and the origin of a local web app, with one model."""
    srv = ServerProcess(tmp_path_factory.mktemp("guard-home"), env={"XITUI_ALLOWED_HOSTS": "models.example.test"},
                        args=("--allowed-origins", ALLOWED_ORIGIN, "--max-body-mib", "1"))
    client = Client(srv.url)
    client.register_model("LLM", gguf_spec("guard-gemma", small_gguf))
    uid = client.launch_model(model_name="guard-gemma")
    yield srv, uid
    srv.stop()


def requests_on_every_route(uid: str, small_gguf: Path) -> list[tuple[str, str, dict | None]]:
    """One request per kind of route: Xinference's, OpenAI's, the fast path, registration and launch."""
    return [
        ("GET", "/v1/models", None),
        ("GET", "/v1/model_registrations/LLM", None),
        ("GET", "/status", None),
        ("GET", "/openapi.json", None),
        ("POST", "/v1/model_registrations/LLM", {"model": gguf_spec("planted", small_gguf), "persist": True}),
        ("POST", "/v1/models", {"model_name": "guard-gemma", "model_uid": "second"}),
        ("POST", "/v1/completions", {"model": uid, "prompt": "Hello", "max_tokens": 4}),
        ("POST", "/v1/chat/completions", {"model": uid, "messages": [{"role": "user", "content": "Hi"}]}),
        ("POST", "/v1/embeddings", {"model": uid, "input": "x"}),
        ("DELETE", f"/v1/models/{uid}", None),
        ("DELETE", "/v1/model_registrations/LLM/guard-gemma", None),
    ]


def served_requests(srv: ServerProcess, uid: str) -> int:
    return Client(srv.url).describe_model(uid)["metrics"]["requests"]


def test_cross_site_and_rebinding_requests_are_refused_on_every_route(
        guarded: tuple[ServerProcess, str], small_gguf: Path) -> None:
    """CSRF (a foreign Origin, any content type) and DNS rebinding (a foreign Host) get 403 before any route runs."""
    srv, uid = guarded
    before = served_requests(srv, uid)
    http = httpx.Client(base_url=srv.url, timeout=30)
    for method, path, body in requests_on_every_route(uid, small_gguf):
        content = None if body is None else json.dumps(body)
        attacks = [
            {"Origin": "http://evil.example", "Content-Type": "text/plain"},  # a "simple" cross-site POST
            {"Origin": "http://evil.example", "Content-Type": "application/json"},
            {"Origin": "null", "Content-Type": "application/json"},  # sandboxed frames and file:// pages
            {"Host": "rebind.evil.example", "Content-Type": "application/json"},
            {"Host": f"rebind.evil.example:{srv.port}", "Content-Type": "application/json"},
        ]
        for headers in attacks:
            r = http.request(method, path, content=content, headers=headers)
            assert r.status_code == 403, (method, path, headers, r.text)
            detail = r.json()["detail"]
            assert "\n" not in detail and ("--allowed-origins" in detail or "--allowed-hosts" in detail)
            assert "access-control-allow-origin" not in r.headers
    client = Client(srv.url)
    assert served_requests(srv, uid) == before  # the model never ran
    assert set(client.list_models()) == {uid}  # nothing launched
    assert "planted" not in {r["model_name"] for r in client.list_model_registrations("LLM")}
    assert not list((srv.home / "model").rglob("planted.json"))  # nothing persisted


@pytest.mark.parametrize("host", [
    ":{port}",  # empty host: a bypass of Ollama's first check
    "localhost.local", "localhost.internal", "127.0.0.1.nip.io", "localhost.evil.example",
    "0.0.0.0:{port}", "[::ffff:7f00:1]:{port}", "evil.example@localhost", "local%68ost",
])
def test_hosts_that_only_look_local_are_refused(guarded: tuple[ServerProcess, str], host: str) -> None:
    srv, _ = guarded
    r = httpx.get(f"{srv.url}/v1/models", headers={"Host": host.format(port=srv.port)})
    assert r.status_code == 403, r.text
    assert "is not allowed" in r.json()["detail"] or "malformed Host" in r.json()["detail"]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:{port}", "127.0.0.1:{port}", "[::1]:{port}",
                                  "localhost:1", "models.example.test", "models.example.test:{port}"])
def test_loopback_and_allowed_hosts_are_served(guarded: tuple[ServerProcess, str], host: str) -> None:
    srv, _ = guarded
    r = httpx.get(f"{srv.url}/v1/models", headers={"Host": host.format(port=srv.port)})
    assert r.status_code == 200, r.text


def raw_request(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data


def test_a_missing_or_doubled_host_header_is_refused(guarded: tuple[ServerProcess, str]) -> None:
    srv, _ = guarded
    answer = raw_request(srv.port, b"GET /v1/models HTTP/1.0\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403") and b"missing Host header" in answer
    answer = raw_request(srv.port, b"GET /v1/models HTTP/1.0\r\nHost: localhost\r\nHost: evil.example\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 403")


def test_allowed_origin_gets_cors_and_a_working_preflight(guarded: tuple[ServerProcess, str]) -> None:
    """A page on an allowed origin can preflight, then stream a completion and read it, with CORS headers."""
    srv, uid = guarded
    before = served_requests(srv, uid)
    preflight = httpx.options(f"{srv.url}/v1/completions", headers={
        "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "content-type" in preflight.headers["access-control-allow-headers"].lower()
    body = {"model": uid, "prompt": "The capital of France is", "max_tokens": 4, "temperature": 0, "stream": True}
    with httpx.stream("POST", f"{srv.url}/v1/completions", json=body, headers={"Origin": ALLOWED_ORIGIN}) as r:
        assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and len(lines) >= 3
    r = httpx.get(f"{srv.url}/v1/models", headers={"Origin": ALLOWED_ORIGIN})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert served_requests(srv, uid) == before + 1
    # a preflight from anywhere else is refused, and carries no CORS grant
    refused = httpx.options(f"{srv.url}/v1/completions", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})
    assert refused.status_code == 403 and "access-control-allow-origin" not in refused.headers


def test_same_origin_pages_such_as_the_api_docs_work(guarded: tuple[ServerProcess, str]) -> None:
    srv, _ = guarded
    r = httpx.post(f"{srv.url}/v1/model_registrations/LLM", json={"model": "{}"}, headers={"Origin": srv.url})
    assert r.status_code == 400 and "model_name" in r.json()["detail"]  # past the guard, to the validator


def test_bodies_must_be_json(guarded: tuple[ServerProcess, str], small_gguf: Path) -> None:
    srv, uid = guarded
    http = httpx.Client(base_url=srv.url, timeout=30)
    for method, path, body in requests_on_every_route(uid, small_gguf):
        if method != "POST":
            continue
        for kind in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
            headers = {"Content-Type": kind} if kind else {}
            r = http.post(path, content=json.dumps(body).encode(), headers=headers)
            assert r.status_code == 415 and "application/json" in r.json()["detail"], (path, kind)
    r = http.post("/v1/completions", content=json.dumps({"model": uid, "prompt": "One,", "max_tokens": 2}),
                  headers={"Content-Type": "application/json; charset=utf-8"})
    assert r.status_code == 200


def server_rss(srv: ServerProcess) -> int:
    return psutil.Process(srv.proc.pid).memory_info().rss


def test_oversized_bodies_are_refused_before_they_are_read(guarded: tuple[ServerProcess, str]) -> None:
    """413 whether the size is declared or streamed; the server's memory does not grow by the body's size."""
    srv, uid = guarded
    http = httpx.Client(base_url=srv.url, timeout=60)
    size = 200 * 1024 * 1024
    chunk = b" " * (1024 * 1024)
    rss = server_rss(srv)

    def endless() -> Iterator[bytes]:
        yield b'{"model": "' + uid.encode() + b'", "input": ["'
        for _ in range(size // len(chunk)):
            yield chunk

    r = http.post("/v1/embeddings", content=endless(), headers={"Content-Type": "application/json"})  # chunked
    assert r.status_code == 413 and "larger than 1 MiB" in r.json()["detail"]
    declared = http.post("/v1/embeddings", content=b"".join(endless()),
                         headers={"Content-Type": "application/json"})  # with Content-Length
    assert declared.status_code == 413 and "server.max_body_mib" in declared.json()["detail"]
    assert server_rss(srv) - rss < 32 * 1024 * 1024
    # a body under the limit still works, chunked too
    ok = http.post("/v1/completions", content=iter([json.dumps({"model": uid, "prompt": "A", "max_tokens": 1}).encode()]),
                   headers={"Content-Type": "application/json"})
    assert ok.status_code == 200, ok.text


def test_real_clients_work_unchanged(guarded: tuple[ServerProcess, str]) -> None:
    """The official xinference-client and openai SDK send no Origin and a loopback Host: nothing changes."""
    import openai
    from xinference_client import RESTfulClient

    srv, uid = guarded
    assert uid in RESTfulClient(srv.url).list_models()
    oa = openai.OpenAI(base_url=f"{srv.url}/v1", api_key="none")
    assert oa.completions.create(model=uid, prompt="One, two,", max_tokens=2).choices[0].text


def test_host_parsing() -> None:
    assert split_host("LocalHost:9997") == ("localhost", "9997")
    assert split_host("[::1]:80") == ("::1", "80")
    assert split_host("[::1]") == ("::1", "")
    for bad in (":9997", "", "[::1", "::1", "host:port", "[::1]x", "a:1:2"):
        assert split_host(bad) is None, bad
    loopback = Policy.for_bind("127.0.0.1", ["lab.example"])
    assert loopback.hosts == {"localhost", "127.0.0.1", "::1", "lab.example"}
    public = Policy.for_bind("192.0.2.7")
    assert public.hosts == {"192.0.2.7"}
    anywhere = Policy.for_bind("0.0.0.0")
    assert {"localhost", "127.0.0.1"} <= anywhere.hosts


def test_serve_refuses_a_malformed_origin(tmp_path: Path) -> None:
    import subprocess

    from tests.conftest import xitui_cmd
    from tests.server.conftest import free_port

    proc = subprocess.run([*xitui_cmd(), "serve", "--port", str(free_port()), "--allowed-origins", "evil.example"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 1 and "write it as a browser sends it" in proc.stderr
    assert "Traceback" not in proc.stderr
