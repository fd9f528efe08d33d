"""Hostile input and other local users, against a real server with the bundled GGUF launched: each attack gets
a 4xx with one line, the server stays healthy (its models list answers and a 4-token completion is quick),
nothing runs, nothing outside the home is written, no worker is left untracked, and other clients wait little.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pexpect
import psutil
import pytest

from tests.conftest import has_ipv6_loopback, peak_rss, run_env, xitui_cmd
from tests.model_files import HELD_OUT, reranker_dir
from tests.server.conftest import ServerProcess, gguf_spec
from xitui.client import Client, ClientError
from xitui.core.config import DEFAULT_MAX_BODY_MIB

pytestmark = [pytest.mark.slow, pytest.mark.alone]  # (latency bounds under attack)

OTHER_USER = "xitui-other"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory, gguf_path: Path,
            small_gguf: Path) -> Iterator[tuple[ServerProcess, str]]:
    """A server with Gemma 3 running (the attacked model), and SmolLM2 registered as `small` for the tests that
    launch models of their own, where any model does (a launch in 0.5 s, against 2.5 s)."""
    srv = ServerProcess(tmp_path_factory.mktemp("hostile-home"), env={"XITUI_HEAD_TIMEOUT": "2"})
    client = Client(srv.url)
    client.register_model("LLM", gguf_spec("target", gguf_path))
    client.register_model("LLM", gguf_spec("small", small_gguf))
    uid = client.launch_model(model_name="target", n_parallel=1)
    yield srv, uid
    srv.stop()


def http(srv: ServerProcess, timeout: float = 60) -> httpx.Client:
    return httpx.Client(base_url=srv.url, timeout=timeout)


def assert_healthy(srv: ServerProcess, uid: str) -> None:
    """The server answers, and a 4-token completion comes back within a second."""
    with http(srv) as h:
        assert h.get("/v1/models").status_code == 200
        start = time.monotonic()
        answer = h.post("/v1/completions", json={"model": uid, "prompt": "Hello", "max_tokens": 4})
        took = time.monotonic() - start
    assert answer.status_code == 200, answer.text
    assert took < 1.0, f"a 4-token completion took {took:.2f} s"


def one_line_4xx(response: httpx.Response, *words: str) -> str:
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:300])
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and len(detail) < 1000, detail
    for word in words:
        assert word in detail, detail
    return detail


def workers(srv: ServerProcess) -> set[int]:
    """Every process under the server (cold workers) or its warm worker (forked workers), by pid."""
    found = set()
    for proc in psutil.process_iter(["pid", "environ"]):
        try:
            if (proc.info["environ"] or {}).get("XITUI_HOME") == str(srv.home) and proc.pid != srv.proc.pid:
                found.add(proc.pid)
        except psutil.Error:
            continue
    return found


def latency_during(srv: ServerProcess, uid: str, attack: callable) -> float:  # type: ignore[valid-type]
    """What `attack` added to the slowest 4-token completion another client got: the slowest while it ran,
    less the slowest over as long a time just before (the machine's own load is not the attack's doing)."""
    worst = [0.0]
    done = threading.Event()

    def other_client() -> None:
        with http(srv) as h:
            while not done.is_set():
                start = time.monotonic()
                h.post("/v1/completions", json={"model": uid, "prompt": "Hi", "max_tokens": 4})
                worst[0] = max(worst[0], time.monotonic() - start)

    thread = threading.Thread(target=other_client)
    thread.start()
    try:
        time.sleep(0.3)
        began = time.monotonic()
        attack()
        took = time.monotonic() - began
        time.sleep(0.3)
        during, worst[0] = worst[0], 0.0
        time.sleep(max(took, 1.0))  # the same client, the same machine, nothing else going on
        before = worst[0]
    finally:
        done.set()
        thread.join()
    return during - before


# --- code execution through a launch ------------------------------------------------------------------


def test_launch_envs_that_load_code_are_refused_and_never_remembered(
        hostile: tuple[ServerProcess, str], tmp_path: Path) -> None:
    srv, uid = hostile
    planted = tmp_path / "planted"
    planted.mkdir()
    marker = tmp_path / "it-ran"
    (planted / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    with http(srv) as h:
        for name in ("PYTHONPATH", "LD_PRELOAD", "HOME", "PATH", "PYTHONSTARTUP", "EVIL_NAME"):
            answer = h.post("/v1/models", json={"model_name": "small", "model_uid": "envs-attack",
                                                "envs": {name: str(planted)}, "restore": True})
            one_line_4xx(answer, name)
        # an allowed one still launches, and what is remembered is the known fields only
        answer = h.post("/v1/models", json={"model_name": "small", "model_uid": "envs-ok", "n_parallel": 1,
                                            "envs": {"OMP_NUM_THREADS": "1"}, "restore": True,
                                            "smuggled": {"PYTHONPATH": str(planted)}})
        assert answer.status_code == 200, answer.text
    assert not marker.exists()
    remembered = json.loads((srv.home / "launches.json").read_text())["models"]
    assert "envs-attack" not in remembered
    assert set(remembered["envs-ok"]["request"]) <= {"model_uid", "model_name", "model_type", "replica", "n_gpu",
                                                     "envs", "n_parallel"}
    # terminated: forgotten (not merely unmarked)
    Client(srv.url).terminate_model("envs-ok")
    assert "envs-ok" not in json.loads((srv.home / "launches.json").read_text())["models"]
    assert_healthy(srv, uid)


def test_a_restore_passes_the_same_checks(tmp_path: Path, small_gguf: Path) -> None:
    """A launches.json planted with PYTHONPATH brings the model back as an error with the reason; nothing runs."""
    home = tmp_path / "home"
    planted = tmp_path / "planted"
    planted.mkdir(parents=True)
    marker = tmp_path / "it-ran"
    (planted / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w').write('pwned')\n")
    spec = json.loads(gguf_spec("restored", small_gguf))
    (home / "model" / "llm").mkdir(parents=True)
    (home / "model" / "llm" / "restored.json").write_text(json.dumps(spec))
    request = {"model_name": "restored", "model_uid": "restored", "envs": {"PYTHONPATH": str(planted)}}
    (home / "launches.json").write_text(json.dumps({"version": 1, "models": {
        "restored": {"request": request, "restore": True, "launched_at": 1}}}))
    srv = ServerProcess(home)
    try:
        client = Client(srv.url)
        deadline = time.monotonic() + 30

        def state() -> str:
            try:
                return client.describe_model("restored")["state"]
            except ClientError:  # the server answers before its restores have started
                return "not yet"

        while state() in ("launching", "not yet") and time.monotonic() < deadline:
            time.sleep(0.1)
        desc = client.describe_model("restored")
        assert desc["state"] == "error" and "PYTHONPATH" in desc["error"]
    finally:
        srv.stop()
    assert not marker.exists()


# --- untracked workers, leaked descriptors, launch races ----------------------------------------------


def test_bad_uids_are_refused_before_anything_opens(hostile: tuple[ServerProcess, str]) -> None:
    srv, uid = hostile
    before_fds = psutil.Process(srv.proc.pid).num_fds()
    before = workers(srv)
    with http(srv) as h:
        for bad in ("x" * 250, "nul\u0000uid", "../escape", ".hidden", "sp ace", ""):
            for _ in range(5):
                answer = h.post("/v1/models", json={"model_name": "target", "model_uid": bad})
                one_line_4xx(answer, "model_uid")
    time.sleep(0.5)
    assert workers(srv) == before
    assert psutil.Process(srv.proc.pid).num_fds() <= before_fds + 2
    assert_healthy(srv, uid)


def test_a_replica_that_cannot_start_stops_the_ones_started(hostile: tuple[ServerProcess, str]) -> None:
    srv, uid = hostile
    before = workers(srv)
    (srv.home / "logs" / "half.1.log").mkdir(parents=True)  # replica 1 cannot open its log
    with http(srv) as h:
        answer = h.post("/v1/models", json={"model_name": "small", "model_uid": "half", "replica": 2,
                                            "n_parallel": 1})
        one_line_4xx(answer, "could not start a worker")
        assert "half" not in [m["id"] for m in h.get("/v1/models").json()["data"]]
    deadline = time.monotonic() + 5
    while workers(srv) != before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert workers(srv) == before, "a replica of the failed launch is still running"
    (srv.home / "logs" / "half.1.log").rmdir()
    assert_healthy(srv, uid)


def test_the_same_uid_launched_twice_at_once_is_a_conflict(hostile: tuple[ServerProcess, str]) -> None:
    srv, uid = hostile
    codes: list[int] = []

    def launch() -> None:
        with http(srv) as h:
            codes.append(h.post("/v1/models", json={"model_name": "small", "model_uid": "twice",
                                                    "n_parallel": 1}).status_code)

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [200, 409]
    Client(srv.url).terminate_model("twice")


# --- files named by specs -----------------------------------------------------------------------------


def _gguf_header_announcing(path: Path, strings: int) -> None:
    """A GGUF whose one metadata entry announces `strings` strings, in a sparse file of zeros."""
    key = b"tokenizer.ggml.tokens"
    head = (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
            + struct.pack("<IIQ", 9, 8, strings))
    with open(path, "wb") as fh:
        fh.write(head)
        fh.truncate(1 << 30)  # 1 GiB, all holes


def test_files_a_spec_names_are_read_bounded(hostile: tuple[ServerProcess, str], tmp_path: Path,
                                             gguf_path: Path) -> None:
    srv, uid = hostile
    client = Client(srv.url)
    folder = tmp_path / "trap"
    folder.mkdir()
    os.mkfifo(folder / "fifo.gguf")
    os.symlink("/dev/zero", folder / "zero.gguf")
    _gguf_header_announcing(folder / "sparse.gguf", 2**62)
    _gguf_header_announcing(folder / "many.gguf", 100_000_000)  # fits the file, more than any real header
    pt = tmp_path / "pt"
    pt.mkdir()
    os.mkfifo(pt / "config.json")
    (pt / "model.safetensors").write_bytes(struct.pack("<Q", 2**40))
    for name in ("fifo", "zero", "sparse", "many"):
        spec = json.loads(gguf_spec(f"trap-{name}", gguf_path))
        spec["model_specs"][0].update(model_uri=f"file://{folder}", model_file_name_template=f"{name}.gguf")
        client.register_model("LLM", json.dumps(spec))
    client.register_model("LLM", json.dumps({
        "version": 2, "model_name": "trap-pt", "model_ability": ["generate"], "context_length": 2048,
        "model_specs": [{"model_format": "pytorch", "model_size_in_billions": 1, "quantization": "none",
                         "model_uri": f"file://{pt}"}]}))

    def attack() -> None:
        with http(srv) as h:
            for name in ("fifo", "zero", "sparse", "many"):
                start = time.monotonic()
                answer = h.post("/v1/estimate", json={"model_name": f"trap-{name}"})
                assert time.monotonic() - start < 2
                detail = one_line_4xx(answer)
                assert {"fifo": "not a regular file", "zero": "not a regular file", "sparse": "more than the file",
                        "many": "more than 16000000"}[name] in detail, detail
            start = time.monotonic()
            answer = h.post("/v1/estimate", json={"model_name": "trap-pt"})
            assert time.monotonic() - start < 2 and answer.status_code == 200, answer.text

    worst = latency_during(srv, uid, attack)
    assert worst < 1.0
    assert_healthy(srv, uid)


# --- specs that cost the server -----------------------------------------------------------------------


def test_spec_templates_cannot_cost_the_server(hostile: tuple[ServerProcess, str], gguf_path: Path) -> None:
    srv, uid = hostile
    cases = {
        "{quantization:>100000000}": "placeholder",
        "{quantization:>9000000000000000000}": "placeholder",
        "{quantization!r}.gguf": "placeholder",
        "{quantization.__class__}.gguf": "placeholder",
    }
    with http(srv) as h:
        for template, word in cases.items():
            spec = json.loads(gguf_spec("costly", gguf_path))
            spec["model_specs"][0]["model_file_name_template"] = template
            one_line_4xx(h.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}), word)
        nested = "{% if true %}" * 400 + "x" + "{% endif %}" * 400
        huge = "{{ messages[0]['content'] }}" * 10_000  # 280 KiB
        for template, word in ((nested, "chat_template"), (huge, "KiB")):
            spec = json.loads(gguf_spec("costly", gguf_path, chat_template=template))
            one_line_4xx(h.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}), word)
        assert h.get("/v1/model_registrations/LLM/costly").status_code == 404

    # a persisted spec that no longer parses is skipped; listing never breaks
    bad = json.loads(gguf_spec("planted-bad", gguf_path))
    bad["model_specs"][0]["model_file_name_template"] = "{quantization:>100000000}"
    (srv.home / "model" / "llm").mkdir(parents=True, exist_ok=True)
    (srv.home / "model" / "llm" / "planted-bad.json").write_text(json.dumps(bad))
    with http(srv) as h:
        start = time.monotonic()
        listed = h.get("/v1/model_registrations/LLM")
        assert listed.status_code == 200 and time.monotonic() - start < 1
        assert "planted-bad" not in [r["model_name"] for r in listed.json()]
    (srv.home / "model" / "llm" / "planted-bad.json").unlink()

    # a large (allowed) template compiles in a thread: other clients keep their latency
    big = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}" * 800  # ~58 KiB

    def register_big() -> None:
        with http(srv) as h:
            for i in range(3):
                spec = gguf_spec(f"big-template-{i}", gguf_path, chat_template=big + f"{{# {i} #}}")
                assert h.post("/v1/model_registrations/LLM", json={"model": spec}).status_code == 200

    assert latency_during(srv, uid, register_big) < 1.0
    assert_healthy(srv, uid)


# --- requests that stall every user of a model --------------------------------------------------------


def test_oversized_requests_are_refused_before_they_cost(hostile: tuple[ServerProcess, str]) -> None:
    srv, uid = hostile

    def attack() -> None:
        with http(srv) as h:
            cases = [
                ({"model": uid, "prompt": "Hi", "stop": [f"w{i}" for i in range(150_000)]}, "stop"),
                ({"model": uid, "prompt": "Hi", "stop": ["x" * 5000]}, "stop"),
                ({"model": uid, "prompt": "word " * 3_000_000}, "characters"),
                ({"model": uid, "prompt": "Hi", "temperature": 1e300}, "temperature"),
                ({"model": uid, "prompt": "Hi", "top_p": 7.0}, "top_p"),
                ({"model": uid, "prompt": "Hi", "stop_token_ids": list(range(10_000))}, "stop_token_ids"),
            ]
            for body, word in cases:
                start = time.monotonic()
                one_line_4xx(h.post("/v1/completions", json=body), word)
                assert time.monotonic() - start < 2.5, word
            chats = [
                ({"model": uid, "messages": [{"role": "user", "content": "Hi"}] * 20_000}, "messages"),
                ({"model": uid, "messages": [{"role": "user", "content": "x" * 200_000}] * 10}, "characters"),
                ({"model": uid, "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}, "text"),
                ({"model": uid, "messages": [{"role": "user", "content": [{"type": "text", "text": ["a"]}]}]},
                 "text"),
                ({"model": uid, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "image_url"),
                ({"model": uid, "messages": [{"role": "user", "content": "Hi", "deep": _nested(300)}],
                  "max_tokens": 2}, None),
            ]
            for body, word in chats:
                answer = h.post("/v1/chat/completions", json=body)
                if word is None:  # an extra key is not forwarded: the request is served
                    assert answer.status_code == 200, answer.text
                else:
                    one_line_4xx(answer, word)
            raw = '{"model": "x", "messages": ' + "[" * 100_000 + "]" * 100_000 + "}"
            one_line_4xx(h.post("/v1/chat/completions", content=raw, headers={"content-type": "application/json"}))

    worst = latency_during(srv, uid, attack)
    assert worst < 1.0, f"the attack added {worst:.2f} s to another client's 4-token completion"
    assert_healthy(srv, uid)


def _nested(depth: int) -> object:
    value: object = "x"
    for _ in range(depth):
        value = {"a": value}
    return value


def test_launch_numbers_are_typed_and_bounded(hostile: tuple[ServerProcess, str]) -> None:
    srv, uid = hostile
    cases = [
        ({"ttl": 10**400}, "ttl"),
        ({"n_threads": "abc"}, "n_threads"),
        ({"n_threads": 0}, "n_threads"),
        ({"n_gpu_layers": 10**30}, "n_gpu_layers"),
        ({"context_length": True}, "context_length"),
        ({"replica": 1000}, "replica"),
        ({"envs": {"OMP_NUM_THREADS": 3}}, "envs"),
    ]
    with http(srv) as h:
        for extra, word in cases:
            body = json.dumps({"model_name": "target", "model_uid": "numbers", **extra}) if extra.get("ttl") != 10**400 \
                else '{"model_name": "target", "model_uid": "numbers", "ttl": 1' + "0" * 400 + "}"
            one_line_4xx(h.post("/v1/models", content=body, headers={"content-type": "application/json"}), word)
        deep = '{"model_name": "target", "x": ' + "[" * 50_000 + "]" * 50_000 + "}"
        one_line_4xx(h.post("/v1/models", content=deep, headers={"content-type": "application/json"}))
    assert_healthy(srv, uid)


# --- input size and the event loop ---------------------------------------------------------------------


def slowest_listing_during(srv: ServerProcess, attack: Any) -> float:
    """The slowest GET /v1/models another client got while `attack()` ran. The attack's bodies are built
    before: building them while this runs would hold this process's lock, not the server's."""
    worst = [0.0]
    done = threading.Event()

    def lister() -> None:
        with http(srv, timeout=30) as h:
            while not done.is_set():
                start = time.monotonic()
                assert h.get("/v1/models").status_code == 200
                worst[0] = max(worst[0], time.monotonic() - start)
                time.sleep(0.005)

    thread = threading.Thread(target=lister)
    thread.start()
    try:
        time.sleep(0.2)
        attack()
    finally:
        done.set()
        thread.join()
    return worst[0]


#: The largest body the server reads (its server.max_body_mib), less room for the JSON around the filling.
FULL_BODY = DEFAULT_MAX_BODY_MIB * 1024 * 1024 - 64 * 1024


def _filled(head: bytes, unit: bytes, tail: bytes) -> bytes:
    """`head`, `unit` repeated up to FULL_BODY bytes, `tail`."""
    return head + unit * ((FULL_BODY - len(head) - len(tail)) // len(unit)) + tail


def _post(h: httpx.Client, path: str, raw: bytes) -> httpx.Response:
    return h.post(path, content=raw, headers={"content-type": "application/json"})


def test_bodies_as_large_as_the_server_reads_hold_up_no_other_route(hostile: tuple[ServerProcess, str]) -> None:
    """Launch, estimate, rerank and chat bodies of ~64 MiB, of long strings or of small objects: each a one-line
    4xx, read off the event loop (small objects by the value, within a budget: orjson held the loop for half
    a second on them, FastAPI's parse 1.6 s); another client's model listing stays quick meanwhile."""
    srv, uid = hostile
    model = json.dumps(uid).encode()
    documents = b'"' + b"word " * (64 * 1024 // 5) + b'"'
    cases = [
        ("/v1/models", _filled(b'{"model_name": "target", "model_uid": "huge", "x": "', b"a", b'"}'), 413, "KiB"),
        ("/v1/estimate", _filled(b'{"model_name": "target", "x": "', b"a", b'"}'), 413, "KiB"),
        ("/v1/models", b'{"model_name": "", "x": [' + b"{}," * 300_000 + b"{}]}", 413, "JSON values"),
        ("/v1/rerank", _filled(b'{"model": ' + model + b', "query": "q", "documents": [', documents + b",",
                               documents + b"]}"), 400, "rerank"),
        ("/v1/rerank", _filled(b'{"model": ' + model + b', "query": "q", "documents": ["a"], "x": [', b"{},",
                               b"{}]}"), 413, "JSON values"),
        ("/v1/chat/completions", _filled(b'{"model": ' + model + b', "messages": [{"role": "user", "content": "',
                                         b"word ", b'"}]}'), 400, "characters"),
        ("/v1/chat/completions", _filled(b'{"model": ' + model + b', "messages": [{"role": "user", "content": "a"}],'
                                         b' "x": [', b'{"a": [1]},', b"{}]}"), 413, "JSON values"),
        ("/v1/embeddings", _filled(b'{"model": ' + model + b', "input": [', b"[],", b"[]]}"), 413, "JSON values"),
    ]
    took: list[float] = []

    def attack() -> None:
        with http(srv) as h:
            for path, raw, status, word in cases:
                start = time.monotonic()
                answer = _post(h, path, raw)
                took.append(time.monotonic() - start)
                assert answer.status_code == status, (path, answer.status_code, answer.text[:300])
                one_line_4xx(answer, word)

    worst = slowest_listing_during(srv, attack)
    print(f"slowest model listing {worst:.3f} s; each body's answer (s): {[round(t, 2) for t in took]}")
    # a loop that waits on the parse stalls 2-10 s here; 1 s leaves room for a loaded CI machine (0.52 s seen)
    assert worst < 1.0, f"a model listing waited {worst:.2f} s while large bodies were read"
    assert_healthy(srv, uid)


def _tool(name: str, parameters: dict[str, Any]) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "parameters": parameters}}


def _with_pattern(size: int, seed: int) -> dict[str, Any]:
    pattern = "^(" + "|".join(f"w{seed}x{i}" for i in range(size // 8)) + ")$"
    return {"type": "object", "properties": {"code": {"type": "string", "pattern": pattern}}, "required": ["code"]}


def test_tools_calls_and_results_count_toward_the_prompt(hostile: tuple[ServerProcess, str], chatty: str) -> None:
    """What becomes the prompt is counted together against the context (8192 tokens: 131072 characters), on the
    server: tool schemas (8 MiB of them reached the tokenizer on the engine thread, others waited 5 s), earlier
    calls' arguments, tool results; all tools together are held to 256 KiB, and forced tools' schemas are
    checked off the event loop (128 tools of 60 KiB patterns froze every route 9.7 s)."""
    srv, uid = hostile
    ask = [{"role": "user", "content": "Call one."}]
    earlier = [{"role": "user", "content": "Go."}] + [
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": json.dumps({"a": "x" * 1_000_000})}}]}
        for i in range(8)]
    results = [{"role": "user", "content": "Go."}, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c0", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}] + [
        {"role": "tool", "tool_call_id": "c0", "content": "y" * 1_000_000} for _ in range(8)]
    cases = [
        ({"messages": ask, "tools": [_tool(f"t{i}", _with_pattern(60_000, i)) for i in range(128)],
          "tool_choice": "required"}, "256 KiB"),
        ({"messages": ask, "tools": [_tool(f"t{i}", {"type": "object", "description": "d" * 65_000})
                                     for i in range(128)]}, "256 KiB"),
        ({"messages": ask, "tools": [_tool(f"t{i}", {"type": "object", "description": "d" * 8_000})
                                     for i in range(24)]}, "tools"),
        ({"messages": earlier, "tools": [_tool("f", {"type": "object"})]}, "arguments"),
        ({"messages": earlier}, "arguments"),
        ({"messages": results}, "characters"),
        ({"messages": [{"role": "user", "content": "x" * 100_000}],
          "tools": [_tool(f"t{i}", {"type": "object", "description": "d" * 1_000}) for i in range(64)]}, "tools"),
    ]
    raws = [json.dumps({"model": chatty, "max_tokens": 4, **body}).encode() for body, _ in cases]
    # within every cap: 128 forced tools with patterns, checked in a thread, then the worker's (it answers, or
    # refuses a prompt longer than the context in tokens: these patterns are ~1.3 characters a token)
    served = json.dumps({"model": chatty, "max_tokens": 8, "messages": ask, "tool_choice": "required",
                         "tools": [_tool(f"t{i}", _with_pattern(600, i)) for i in range(128)]}).encode()

    def attack() -> None:
        with http(srv) as h:
            for raw, (_, word) in zip(raws, cases, strict=True):
                one_line_4xx(_post(h, "/v1/chat/completions", raw), word, "characters" if word == "tools" else "")

    worst = [0.0]

    def listed() -> None:
        worst[0] = slowest_listing_during(srv, attack)

    slower = latency_during(srv, chatty, listed)
    print(f"refused: slowest model listing {worst[0]:.3f} s; another client's 4-token completion: +{slower:.2f} s")
    assert worst[0] < 0.5, f"a model listing waited {worst[0]:.2f} s"
    assert slower < 1.0, f"the attack added {slower:.2f} s to another client's 4-token completion"
    # served (its prompt is the model's to read: the listing is what must not wait)
    answers: list[httpx.Response] = []
    with http(srv, timeout=120) as h:
        worst[0] = slowest_listing_during(srv, lambda: answers.append(_post(h, "/v1/chat/completions", served)))
    assert answers[0].status_code == 200 or one_line_4xx(answers[0]), answers[0].text[:300]
    print(f"128 forced tools with patterns: {answers[0].text[:200]}; slowest model listing {worst[0]:.3f} s")
    assert worst[0] < 0.5, f"a model listing waited {worst[0]:.2f} s"
    assert_healthy(srv, uid)


def test_deep_values_are_one_line_400s_before_anything_serializes_them(hostile: tuple[ServerProcess, str],
                                                                        chatty: str) -> None:
    """Template variables, tool parameters (auto and forced), schemas and earlier calls' arguments nested past
    64 levels were 500s (json.dumps' RecursionError, orjson's limit); a 100 000-deep list in any field too."""
    srv, uid = hostile
    deep, deep_list = _nested(500), "[" * 100_000 + "]" * 100_000
    ask = [{"role": "user", "content": "Hi"}]
    bodies = [
        {"messages": ask, "chat_template_kwargs": {"x": deep}},
        {"messages": ask, "tools": [_tool("f", {"type": "object", "properties": {"a": deep}})]},
        {"messages": ask, "tools": [_tool("f", {"type": "object", "properties": {"a": deep}})], "tool_choice": "required"},
        {"messages": ask, "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": deep}}},
        {"messages": ask, "response_format": {"type": "json_object", "schema": {"type": "object", "x": deep}}},
        {"messages": [*ask, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": json.dumps(deep)}}]}]},
        {"messages": [*ask, {"role": "assistant", "content": None, "tool_calls": [
            {"id": "c", "type": "function", "function": {"name": "f", "arguments": "[" * 100_000}}]}]},
    ]
    with http(srv) as h:
        for body in bodies:
            one_line_4xx(h.post("/v1/chat/completions", json={"model": chatty, "max_tokens": 2, **body}), "nested deeper")
        for field in ("messages", "tools", "chat_template_kwargs", "response_format", "stop", "tool_choice"):
            raw = f'{{"model": {json.dumps(chatty)}, "messages": [{{"role": "user", "content": "Hi"}}], "{field}": {deep_list}}}'
            answer = _post(h, "/v1/chat/completions", raw.encode())
            assert answer.status_code == 400, (field, answer.status_code, answer.text[:200])
            one_line_4xx(answer, "nested")
        for path, raw in [("/v1/rerank", f'{{"model": "x", "query": "q", "documents": {deep_list}}}'),
                          ("/v1/estimate", f'{{"model_name": "target", "envs": {deep_list}}}'),
                          ("/v1/completions", f'{{"model": {json.dumps(uid)}, "prompt": {deep_list}}}')]:
            answer = _post(h, path, raw.encode())
            assert answer.status_code == 400, (path, answer.status_code, answer.text[:200])
            one_line_4xx(answer, "nested")
        # nesting within the limit is served
        kwargs = {"x": _nested(40)}
        assert h.post("/v1/chat/completions", json={"model": chatty, "max_tokens": 2, "messages": ask,
                                                     "chat_template_kwargs": kwargs}).status_code == 200
    assert_healthy(srv, uid)


def test_rerank_texts_are_read_as_far_as_the_model_reads_in_bounded_memory(hostile: tuple[ServerProcess, str]
                                                                           ) -> None:
    """A 256 KiB query and eight 256 KiB documents: each text is cut to what the model reads (96 tokens) before
    any tokenizer sees it (tokenized whole, the pairs' overflow windows took 350 MiB for two 16 KiB texts and
    reached the OOM killer at 256 KiB x 8); the scores are the model's own truncation's; the largest body the
    server reads is answered, the listing staying quick."""
    srv, uid = hostile
    client = Client(srv.url)
    spec = {"version": 2, "model_name": "hostile-reranker", "language": ["en"], "type": "normal", "max_tokens": 96,
            "model_specs": [{"model_format": "pytorch", "model_uri": str(reranker_dir()), "quantization": "none"}]}
    client.register_model("rerank", json.dumps(spec))
    rr = client.launch_model(model_name="hostile-reranker", model_type="rerank")
    try:
        questions, passages = list(HELD_OUT), list(HELD_OUT.values())
        worker = psutil.Process(client.describe_model(rr)["pid"])
        with http(srv, timeout=300) as h:
            def rerank(query: str, documents: list[str]) -> list[float]:
                answer = h.post("/v1/rerank", json={"model": rr, "query": query, "documents": documents})
                assert answer.status_code == 200, answer.text[:300]
                return [r["relevance_score"] for r in sorted(answer.json()["results"], key=lambda r: r["index"])]

            # text past what the model reads changes no score: cut as the model itself would cut
            filler = " ".join(passages) + " "
            long = [p + " " + filler for p in passages]  # past 96 tokens, short of the characters cut at once
            longer = [d + filler * 400 for d in long]
            assert rerank(questions[0], longer) == pytest.approx(rerank(questions[0], long), abs=1e-6)

            kib = 256 * 1024
            query = (filler * (kib // len(filler) + 1))[:kib]
            documents = [(f"document {i} " + filler * (kib // len(filler) + 1))[:kib] for i in range(8)]
            with peak_rss(worker, 0.01) as seen:
                started = time.monotonic()
                scores = rerank(query, documents)
                took = time.monotonic() - started
            before, peak = seen[0], [seen[1]]
            growth = (peak[0] - before) / 2**20
            print(f"rerank 256 KiB x 8: {took:.2f} s, the worker's memory grew {growth:.0f} MiB at most")
            assert len(scores) == 8 and growth < 300, f"the worker's memory grew {growth:.0f} MiB"

            raw = _filled(b'{"model": ' + json.dumps(rr).encode() + b', "query": "q", "return_len": true, '
                          b'"documents": [', b'"' + b"word " * (1024 * 1024 // 5) + b'",', b'"last"]}')
            answers: list[httpx.Response] = []
            worst = slowest_listing_during(srv, lambda: answers.append(_post(h, "/v1/rerank", raw)))
            assert answers[0].status_code == 200, answers[0].text[:300]
            results = answers[0].json()
            assert len(results["results"]) == raw.count(b' ",') + 1
            assert results["meta"]["tokens"]["input_tokens"] <= 96 * (len(results["results"]) + 1)
            print(f"a {len(raw) >> 20} MiB rerank body: slowest model listing {worst:.3f} s")
            # parsed on the loop this stalled 2.24 s; 1 s leaves room for a loaded CI machine (0.52 s seen there)
            assert worst < 1.0, f"a model listing waited {worst:.2f} s during a {len(raw) >> 20} MiB rerank"
        assert worker.is_running() and client.describe_model(rr)["pid"] == worker.pid
    finally:
        client.terminate_model(rr)
        client.unregister_model("rerank", "hostile-reranker")
    assert_healthy(srv, uid)


# --- constrained decoding: grammars, schemas and tool calls that crashed or stalled the worker ---------


@pytest.fixture(scope="module")
def chatty(hostile: tuple[ServerProcess, str]) -> str:
    """The bundled chat model (tool calls in Hermes' markers) with 4 slots beside the attacker."""
    srv, _ = hostile
    return Client(srv.url).launch_model(model_name="demo-smollm2-135m", model_uid="chatty", n_parallel=4)


HOSTILE_FORMS = [
    # llama.cpp's parser recursed once per level: SIGSEGV
    ({"grammar": "root ::= " + "(" * 20_000 + '"a"' + ")" * 20_000}, "nested deeper"),
    # nothing can match, or a token id past the vocabulary: SIGABRT
    ({"grammar": "root ::= [^\\x00-\\U0010FFFF]"}, "grammar"),
    ({"grammar": "root ::= <[2147483647]>"}, "grammar"),
    ({"grammar": 'root ::= "a"{0,1000000}'}, "repetition"),
    # live stacks doubling per level: seconds per token for every slot
    ({"grammar": "root ::= x0 \"b\"\n" + "\n".join(f'x{i} ::= "a" x{i + 1} | "a" x{i + 1} | ""'
                                                    for i in range(60)) + '\nx60 ::= "a"'}, None),
    # ordinary schemas that llama-cpp-python's converter turned into one nested group per repetition
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "type": "string", "maxLength": 100_000}}}}, None),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "type": "array", "items": {"type": "integer"}, "maxItems": 100_000}}}}, None),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "type": "string", "pattern": "^a{0,60000}$"}}}}, None),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "type": "string", "pattern": "^((a|a)*(a|a)*)*(b|b)*((c|c)*)*$"}}}}, None),
]


def test_hostile_grammars_and_schemas_cost_their_own_answer_only(hostile: tuple[ServerProcess, str],
                                                                chatty: str) -> None:
    srv, _ = hostile
    client = Client(srv.url)
    pid = client.describe_model(chatty)["pid"]
    outcomes: list[str] = []

    def attack() -> None:
        with http(srv) as h:
            for extra, word in HOSTILE_FORMS:
                body = {"model": chatty, "messages": [{"role": "user", "content": "Write something."}],
                        "max_tokens": 48, "temperature": 0, **extra}
                answer = h.post("/v1/chat/completions", json=body)
                if word is not None:
                    outcomes.append(one_line_4xx(answer, word))
                else:  # held, or ended with the grammar's own one-line reason
                    assert answer.status_code in (200, 400), answer.text[:300]
                    if answer.status_code == 400:
                        outcomes.append(one_line_4xx(answer))
                    else:
                        assert answer.json()["usage"]["completion_tokens"] <= 48

    worst = latency_during(srv, chatty, attack)
    assert worst < 1.0, f"the attacks added {worst:.2f} s to another client's 4-token completion"
    assert client.describe_model(chatty)["pid"] == pid, "the worker was restarted: it died"
    assert client.describe_model(chatty).get("restarts", 0) == 0
    assert_healthy(srv, chatty)


# a call a thousand levels deep while another stream shares the batch: test_scripted_tools.py


# --- HTTP and process edges ---------------------------------------------------------------------------


def test_oversized_heads_and_silent_connections_are_cut(hostile: tuple[ServerProcess, str]) -> None:
    srv, uid = hostile
    with http(srv) as h:
        answer = h.get("/v1/models", headers={"x-filler": "a" * 200_000})
        assert answer.status_code == 431 and "KiB" in answer.json()["detail"]
        many = {f"x-h{i}": "b" * 100 for i in range(2000)}
        assert h.get("/v1/models", headers=many).status_code == 431
    silent = socket.create_connection(("127.0.0.1", srv.port))
    trickle = socket.create_connection(("127.0.0.1", srv.port))
    trickle.sendall(b"GET /v1/models HTTP/1.1\r\n")
    start = time.monotonic()
    silent.settimeout(10)
    assert silent.recv(1) == b""  # closed by the server after XITUI_HEAD_TIMEOUT (2 s here)
    assert time.monotonic() - start < 5
    trickle.settimeout(10)
    assert trickle.recv(1) == b""
    silent.close()
    trickle.close()
    assert_healthy(srv, uid)


def test_sigterm_to_the_process_group_starts_no_new_warm_worker(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "XITUI_HOME": str(home), "XITUI_CONFIG": str(home / "config.toml")}
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "xitui.server", "--port", str(port)], env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = Client(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if client.status()["warm_worker"]["state"] == "ready":
                break
        except Exception:
            pass
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(15)
    time.sleep(1.5)
    left = [p for p in psutil.process_iter(["environ", "cmdline"])
            if (p.info["environ"] or {}).get("XITUI_HOME") == str(home)]
    assert not left, [p.info["cmdline"] for p in left]
    log = (home / "logs" / "warm-worker.log").read_text() if (home / "logs" / "warm-worker.log").exists() else ""
    assert log.count("warm worker ready") <= 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_stop_never_signals_a_process_that_is_not_a_xitui_server(tmp_path: Path) -> None:
    bystander = subprocess.Popen(["sleep", "60"])
    try:
        home = Path(os.environ["XITUI_HOME"])
        home.mkdir(parents=True, exist_ok=True)
        (home / "server.json").write_text(json.dumps({"pid": bystander.pid, "host": "127.0.0.1", "port": 1}))
        done = subprocess.run([*xitui_cmd(), "stop"], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0
        assert "no background server" in done.stderr + done.stdout
        assert bystander.poll() is None, "xitui stop signalled a process that is not a xitui server"
        assert not (home / "server.json").exists()
    finally:
        bystander.kill()
        bystander.wait()


def test_home_files_are_private_whatever_the_umask(tmp_path: Path, small_gguf: Path) -> None:
    home = tmp_path / "home"
    old = os.umask(0)
    try:
        home.mkdir(mode=0o777)
        srv = ServerProcess(home)
    finally:
        os.umask(old)
    try:
        client = Client(srv.url)
        client.register_model("LLM", gguf_spec("private", small_gguf), persist=True)
        uid = client.launch_model(model_name="private", n_parallel=1)
        env = {**os.environ, "XITUI_HOME": str(home)}
        subprocess.run([*xitui_cmd(), "chat", "-u", uid, "-e", srv.url, "--max-tokens", "2"], input="Hi\n",
                       capture_output=True, text=True, timeout=120, env=env,
                       preexec_fn=lambda: os.umask(0))
    finally:
        srv.stop()
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    for path in [home / "logs" / "private.log", home / "chats.sqlite3", home / "launches.json",
                 home / "model" / "llm" / "private.json"]:
        assert path.exists(), path
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, f"{path} is {oct(path.stat().st_mode)}"


# --- other users of this machine ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def other_user() -> pwd.struct_passwd:
    if os.geteuid() != 0:
        pytest.skip("creating a second OS user needs root (this test runs as a normal user)")
    if shutil.which("useradd") is None or shutil.which("setpriv") is None:
        pytest.skip("useradd and setpriv are needed to act as a second OS user")
    try:
        return pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", OTHER_USER], check=True)
        return pwd.getpwnam(OTHER_USER)


def as_user(user: pwd.struct_passwd, code: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """Python code run as `user` (the system's Python, standard library only), from /tmp."""
    python = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
    return subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups",
                           python, "-c", code], capture_output=True, text=True, timeout=timeout, cwd="/tmp",
                          env={"PATH": "/usr/bin:/bin", "HOME": "/tmp"})


GET_AS_OTHER = """
import json, sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1] if len(sys.argv) > 1 else {url!r}, headers={headers!r})
try:
    with urllib.request.urlopen(req, timeout=20) as r:
        print(r.status, r.read().decode()[:300])
except urllib.error.HTTPError as e:
    print(e.code, json.loads(e.read())["detail"])
"""


def test_another_user_is_refused_and_admitted_when_configured(
        other_user: pwd.struct_passwd, tmp_path: Path, small_gguf: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    srv = ServerProcess(home)
    try:
        url = f"{srv.url}/v1/models"
        refused = as_user(other_user, GET_AS_OTHER.format(url=url, headers={}))
        assert refused.stdout.startswith("403"), refused.stdout + refused.stderr
        assert "server.allow_other_users" in refused.stdout and OTHER_USER in refused.stdout
        # the owner (and root) are served as always
        assert httpx.get(url).status_code == 200
    finally:
        srv.stop()

    (home / "config.toml").write_text("[server]\nallow_other_users = true\n")
    srv = ServerProcess(home)
    try:
        admitted = as_user(other_user, GET_AS_OTHER.format(url=f"{srv.url}/v1/models", headers={}))
        assert admitted.stdout.startswith("200"), admitted.stdout + admitted.stderr
    finally:
        srv.stop()

    (home / "config.toml").write_text("")
    srv = ServerProcess(home, api_key="s3cret")
    try:
        keyed = as_user(other_user, GET_AS_OTHER.format(url=f"{srv.url}/v1/models",
                                                        headers={"Authorization": "Bearer s3cret"}))
        assert keyed.stdout.startswith("200"), keyed.stdout + keyed.stderr
        keyless = as_user(other_user, GET_AS_OTHER.format(url=f"{srv.url}/v1/models", headers={}))
        assert keyless.stdout.startswith("401"), keyless.stdout
    finally:
        srv.stop()


def test_the_cli_sends_nothing_to_another_users_port(other_user: pwd.struct_passwd) -> None:
    port = _free_port()
    listener = subprocess.Popen(
        ["setpriv", f"--reuid={other_user.pw_uid}", f"--regid={other_user.pw_gid}", "--clear-groups",
         "/usr/bin/python3", "-c",
         f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); "
         "c,_=s.accept(); print('GOT', c.recv(100), flush=True)"],
        stdout=subprocess.PIPE, text=True, cwd="/tmp")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        # the probe above was the listener's one accept: start another that would print what it gets
        listener.wait(10)
        listener = subprocess.Popen(
            ["setpriv", f"--reuid={other_user.pw_uid}", f"--regid={other_user.pw_gid}", "--clear-groups",
             "/usr/bin/python3", "-c",
             f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); "
             "s.settimeout(20)\nwhile True:\n c,_=s.accept(); got=c.recv(100); print('GOT', got, flush=True)\n"
             " if got == b'the test is done': break"],
            stdout=subprocess.PIPE, text=True, cwd="/tmp")
        time.sleep(1.0)
        done = subprocess.run([*xitui_cmd(), "generate", "-u", "x", "-e", f"http://127.0.0.1:{port}",
                               "my secret prompt"], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert "another user" in done.stderr and "Traceback" not in done.stderr
        # the listener prints every connection it accepted: the CLI's would come before this last one
        with socket.create_connection(("127.0.0.1", port), timeout=5) as last:
            last.sendall(b"the test is done")
        out, _ = listener.communicate(timeout=20)
        assert out.splitlines() == ["GOT b'the test is done'"], out
    finally:
        listener.kill()


#: Run as the other user: each request on its own connection, the socket dropped right after sending it,
#: so that by the time the server asks the kernel who made the connection, nothing answers for it (a reset
#: socket is gone; a closed one leaves a FIN_WAIT2 or TIME_WAIT entry whose uid reads 0).
SEND_AND_DROP = """
import json, socket, struct, time

def send(p, method, path, body, how):
    family = socket.AF_INET6 if ":" in p["host"] else socket.AF_INET
    host = "[" + p["host"] + "]" if family == socket.AF_INET6 else p["host"]
    head = (method + " " + path + " HTTP/1.1\\r\\nHost: " + host + ":" + str(p["port"]) +
            "\\r\\ncontent-type: application/json\\r\\ncontent-length: " + str(len(body)) + "\\r\\n\\r\\n")
    sock = socket.socket(family)
    sock.connect((p["host"], p["port"]))
    if how == "reset":  # SO_LINGER {1, 0}: close() sends RST and the socket is gone at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.sendall(head.encode() + body)
    sock.close()

def attack(p):
    for how in ("reset", "close"):
        for i in range(p["tries"]):
            send(p, "DELETE", "/v1/model_registrations/LLM/" + p["victims"][i], b"", how)
            spec = p["spec"].replace("INTRUDER", "intruder-" + how + "-" + str(i))
            send(p, "POST", "/v1/model_registrations/LLM", json.dumps({"model": spec}).encode(), how)
            send(p, "DELETE", "/v1/models/" + p["uid"], b"", how)
    print("sent", flush=True)
"""

#: Run as the other user: one request, the sending side shut (half-close), then the answer read.
HALF_CLOSED_GET = """
import socket
family = socket.AF_INET6 if ":" in {host!r} else socket.AF_INET
sock = socket.socket(family)
sock.connect(({host!r}, {port}))
host = "[" + {host!r} + "]" if family == socket.AF_INET6 else {host!r}
sock.sendall(("GET /v1/models HTTP/1.1\\r\\nHost: " + host + ":{port}\\r\\nconnection: close\\r\\n\\r\\n").encode())
sock.shutdown(socket.SHUT_WR)
answer = b""
while chunk := sock.recv(65536):
    answer += chunk
print(answer.decode(errors="replace").split("\\r\\n")[0], answer.decode(errors="replace").split("\\r\\n\\r\\n", 1)[-1])
"""



@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_another_user_that_drops_its_sockets_is_refused_too(
        other_user: pwd.struct_passwd, tmp_path: Path, small_gguf: Path, host: str) -> None:
    if host == "::1" and not has_ipv6_loopback():
        pytest.skip("this machine has no IPv6 loopback (::1)")
    tries = 10
    home = tmp_path / "home"
    home.mkdir()
    srv = ServerProcess(home, host=host)
    try:
        owner = Client(srv.url)
        victims = [f"victim-{i}" for i in range(tries)]
        for name in victims:
            owner.register_model("LLM", gguf_spec(name, small_gguf))
        uid = owner.launch_model(model_name="victim-0", n_parallel=1)
        params = {"host": host, "port": srv.port, "tries": tries, "victims": victims, "uid": uid,
                  "spec": gguf_spec("INTRUDER", small_gguf)}
        sent = as_user(other_user, SEND_AND_DROP + f"\nattack(json.loads({json.dumps(params)!r}))\n", timeout=120)
        assert sent.stdout.strip() == "sent", sent.stdout + sent.stderr
        time.sleep(1.0)  # what got in would be running by now (registering takes well under a second)

        names = {r["model_name"] for r in owner.list_model_registrations("LLM")}
        assert set(victims) <= names, f"deleted by the other user: {sorted(set(victims) - names)}"
        assert not {n for n in names if n.startswith("intruder")}, f"created by the other user: {sorted(names)}"
        assert uid in owner.list_models(), "the owner's model was terminated"

        # a request that waits for its answer gets the 403 naming the setting and the user, and so does a
        # half-closed one: its socket is still held (FIN_WAIT2), so the kernel still knows whose it is (the
        # refusal is written before the server reads the end of the request; a route that does any work is
        # never answered on a half-closed connection: uvicorn takes its end for the client hanging up)
        refused = as_user(other_user, GET_AS_OTHER.format(url=f"{srv.url}/v1/models", headers={}))
        assert refused.stdout.startswith("403"), refused.stdout + refused.stderr
        assert "server.allow_other_users" in refused.stdout and OTHER_USER in refused.stdout
        half = as_user(other_user, HALF_CLOSED_GET.format(host=host, port=srv.port))
        assert half.stdout.startswith("HTTP/1.1 403"), half.stdout + half.stderr
        assert "server.allow_other_users" in half.stdout and OTHER_USER in half.stdout
        # the owner is served on a new connection each time as on a kept-alive one, and may change things
        for _ in range(20):
            assert httpx.get(f"{srv.url}/v1/models").status_code == 200
        answer = httpx.post(f"{srv.url}/v1/completions", json={"model": uid, "prompt": "Hi", "max_tokens": 4},
                            timeout=60)
        assert answer.status_code == 200, answer.text
        owner.unregister_model("LLM", "victim-9")
        assert "victim-9" not in {r["model_name"] for r in owner.list_model_registrations("LLM")}
    finally:
        srv.stop()


def test_a_connection_whose_owner_is_unknown_gets_one_line_naming_the_setting() -> None:
    import asyncio

    from xitui.server.edge.connection import refusal_app

    sent: list[dict[str, object]] = []

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    asyncio.run(refusal_app(None)({"type": "http"}, None, send))
    assert sent[0]["status"] == 403
    detail = json.loads(sent[1]["body"])["detail"]  # type: ignore[arg-type]
    assert "\n" not in detail and "server.allow_other_users" in detail and "could not be found" in detail


# --- text from the server reaching a terminal ---------------------------------------------------------

#: What a server or a model may send a terminal: a window title (OSC 0), a clipboard write (OSC 52), a screen
#: clear in its C1 form, a bidi override; and rich markup, which must show as the text it is. No "/": it names
#: a directory too.
EVIL = "\x1b]0;pwned\x07\x1b]52;c;cHduZWQ=\x07[bold red]x\x9b2J\u202e"
#: Markup rich and Textual fail on when they parse it (a closing tag with nothing to close).
CRASHING_MARKUP = "x[/]"
#: A steering prompt: the base model continues it with the same lines, escapes included (checked below).
STEER = "\x1b]0;pwned\x07 hello\n" * 12
#: A grammar that makes the model write escapes, split between pieces as it streams (ESC in one, `]` next).
ESCAPING_GRAMMAR = r'root ::= "\x1b]0;pwned\x07 hi \x1b[2J\x9b31m" "done"'
UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: rich's own drawing on a terminal: colours, cursor moves and hiding (CSI); nothing else is expected there.
RICH_CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def assert_terminal_safe(text: str, terminal: bool = False) -> None:
    """Nothing of the sequences shows, not even their contents; on a terminal rich's own CSI is let be."""
    assert "pwned" not in text and "cHduZWQ" not in text and "\x1b]" not in text, repr(text)
    assert "\x1b[2J" not in text and "Traceback" not in text, repr(text)
    if terminal:
        text = RICH_CSI.sub("", text).replace("\r", "")
    assert not UNSAFE.search(text), repr(text)


def cli(args: list[str], srv: ServerProcess | None, terminal: bool = False, timeout: float = 120
        ) -> tuple[int, str, str]:
    """`xitui ARGS -e URL` (no -e without `srv`): piped (exit status, stdout, stderr), or in a wide
    pseudo-terminal (stdout and stderr as one)."""
    args = [*args, "-e", srv.url] if srv is not None else args
    if not terminal:
        done = subprocess.run([*xitui_cmd(), *args], capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=run_env(NO_COLOR=""))
        return done.returncode, done.stdout, done.stderr
    cmd = xitui_cmd()
    child = pexpect.spawn(cmd[0], [*cmd[1:], *args], env=run_env(TERM="xterm-256color", COLUMNS="1000",
                                                                 LINES="50", NO_COLOR=""),
                          encoding="utf-8", timeout=timeout, dimensions=(50, 1000))
    child.expect(pexpect.EOF)
    child.close()
    return child.exitstatus, child.before, ""


@pytest.fixture(scope="module")
def told(hostile: tuple[ServerProcess, str], tmp_path_factory: pytest.TempPathFactory, gguf_path: Path
         ) -> Iterator[ServerProcess]:
    """The hostile server holding text a terminal would act on, where its rules let it in: an embedding
    registration's languages, a model whose launch failed on a path (its error quotes it, its log too), and a
    registration whose launch is refused with the path in the detail."""
    srv, _ = hostile
    client = Client(srv.url)
    root = tmp_path_factory.mktemp("evil-paths")
    client.register_model("embedding", json.dumps({
        "model_name": "evil-languages", "dimensions": 384, "max_tokens": 256,
        "language": [CRASHING_MARKUP, EVIL, "en"], "model_uri": str(root)}))
    folder = root / f"models-{EVIL}"
    folder.mkdir()
    with gguf_path.open("rb") as whole:  # a GGUF header llama.cpp then fails to load: the worker says so
        (folder / gguf_path.name).write_bytes(whole.read(8 << 20))
    for name, where in (("evil-broken", folder), ("evil-missing", root / f"gone-{EVIL}")):
        spec = json.loads(gguf_spec(name, gguf_path))
        spec["model_specs"][0]["model_uri"] = f"file://{where}"
        client.register_model("LLM", json.dumps(spec))
    client.launch_model(model_name="evil-broken", wait_ready=False)
    deadline = time.monotonic() + 60
    while client.list_models().get("evil-broken", {}).get("state") == "launching":
        assert time.monotonic() < deadline, "the broken launch never ended"
        time.sleep(0.2)
    broken = client.list_models()["evil-broken"]
    assert broken["state"] == "error" and "\x1b]0;pwned" in broken["error"], broken  # the server sends it raw
    yield srv
    client.terminate_model("evil-broken")
    for kind, name in (("LLM", "evil-broken"), ("LLM", "evil-missing"), ("embedding", "evil-languages")):
        client.unregister_model(kind, name)


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_names_errors_and_logs_from_the_server_reach_no_terminal_raw(told: ServerProcess, terminal: bool) -> None:
    """`registrations`, `list`, `logs` and an error line: the escapes are gone, markup shows as text (on a
    terminal rich draws the tables: a language `x[/]` crashed it, `[bold red]x` turned bold)."""
    status, out, err = cli(["registrations", "-t", "embedding"], told, terminal)
    assert status == 0, out + err
    assert_terminal_safe(out + err, terminal)
    assert CRASHING_MARKUP in out and "[bold red]x" in out

    status, out, err = cli(["list"], told, terminal)
    assert status == 0, out + err
    assert_terminal_safe(out + err, terminal)
    assert "evil-broken" in out and "[bold red]x" in out  # its error, whole, markup as text

    status, out, err = cli(["logs", "-u", "evil-broken"], told, terminal)
    assert status == 0, out + err
    assert_terminal_safe(out + err, terminal)
    assert "could not load" in out and "[bold red]x" in out

    status, out, err = cli(["launch", "-n", "evil-missing"], told, terminal)
    assert status == 1, out + err
    assert_terminal_safe(out + err, terminal)
    line = RICH_CSI.sub("", err or out).strip().splitlines()[-1]  # on a terminal, after the progress bar
    assert line.startswith("error: evil-missing: model file not found") and "[bold red]x" in line, line


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_a_steered_answer_streams_to_the_terminal_made_safe(hostile: tuple[ServerProcess, str], terminal: bool
                                                            ) -> None:
    """A model steered by its prompt writes escapes (the server passes them on: checked first); `generate` and
    `chat`, rendered and --raw, print the answer without them, and `chats show` shows the saved one so too
    (its --json keeps them, escaped)."""
    srv, uid = hostile
    handle = Client(srv.url).get_model(uid)
    settings = {"max_tokens": 16, "temperature": 0}
    raw = handle.generate(STEER, generate_config=settings)["choices"][0]["text"]
    assert "\x1b]0;pwned\x07 hello" in raw, repr(raw)
    chat_raw = handle.chat([{"role": "user", "content": STEER}], generate_config=settings)
    assert "\x1b]0;pwned\x07" in chat_raw["choices"][0]["message"]["content"]

    flags = ["--temperature", "0", "--max-tokens", "16"]
    runs = [["chat", "-u", uid, "--raw", *flags, STEER]]  # saved: session 1
    if terminal:  # rendered Markdown, and the exact text
        runs += [["generate", "-u", uid, *flags, STEER], ["generate", "-u", uid, "--raw", *flags, STEER],
                 ["chat", "-u", uid, "--no-save", *flags, STEER]]
    else:  # a pipe gets the exact text, streamed or not
        runs += [["generate", "-u", uid, *flags, STEER], ["chat", "-u", uid, "--no-stream", "--no-save", *flags, STEER]]
    for args in runs:
        status, out, err = cli(args, srv, terminal)
        assert status == 0, (args, out, err)
        assert_terminal_safe(out + err, terminal)
        assert "hello" in out, (args, out)

    status, out, err = cli(["chats", "show", "1"], None, terminal)  # the --raw chat above, saved as it came
    assert status == 0, out + err
    assert_terminal_safe(out + err, terminal)
    assert "hello" in out
    if not terminal:
        status, out, err = cli(["chats", "show", "1", "--json"], None)
        assert status == 0 and UNSAFE.search(out) is None, out
        answer = json.loads(out)["messages"][-1]["content"]
        assert "\x1b]0;pwned\x07" in answer  # the data is kept as the model wrote it; only its display is safe


def test_a_grammar_forced_answer_split_between_pieces_leaks_nothing(hostile: tuple[ServerProcess, str],
                                                                    capfd: pytest.CaptureFixture[str]) -> None:
    """The CLI's own chat loop (the code `xitui chat` runs) over a stream whose escapes are cut between pieces:
    what reaches stdout (raw) and the terminal's console (rendered) carries none of them."""
    from rich.console import Console

    from xitui.cli.answer_view import AnswerView
    from xitui.cli.chat_loop import ChatLoop
    from xitui.client.conversation import Conversation

    srv, uid = hostile
    handle = Client(srv.url).get_model(uid)
    config = {"grammar": ESCAPING_GRAMMAR, "max_tokens": 40, "temperature": 0}
    pieces = [(c["choices"][0].get("delta") or {}).get("content") or ""
              for c in handle.chat([{"role": "user", "content": "x"}], generate_config={**config, "stream": True})]
    assert "\x1b" in pieces and "".join(pieces).startswith("\x1b]0;pwned\x07"), pieces  # split: ESC alone

    talk = Conversation(handle, model_uid=uid, model_name=uid, kind="chat", params=config)
    answer = ChatLoop(talk, raw=True).ask("x")
    assert answer.text.startswith("\x1b]0;pwned\x07")  # the conversation keeps what the model wrote
    shown = capfd.readouterr().out
    assert_terminal_safe(shown)
    assert " hi 1mdone" not in shown and " hi done" in shown, repr(shown)

    screen = io.StringIO()
    view = AnswerView(True, Console(file=screen, force_terminal=True, width=80, highlight=False))
    for piece in pieces:
        view.add(piece)
    view.close("figures \x1b]0;pwned\x07")
    assert_terminal_safe(screen.getvalue(), terminal=True)
    assert "hi done" in RICH_CSI.sub("", screen.getvalue())


def test_the_dashboard_shows_the_servers_text_as_text(told: ServerProcess) -> None:
    """The dashboard over the same server: the failed model's row and detail line, its log, a refused launch's
    notification, and an answer forced to write escapes (pieces split between frames) carry none of them, and
    markup shows as text; copying the answer copies it made safe."""
    from textual.widgets import Log, Static

    from tests.support.pilot import until
    from xitui.tui.dashboard_app import make_app
    from xitui.tui.widgets.chat import ChatPane
    from xitui.tui.widgets.models_table import ModelsTable

    client = Client(told.url)
    generation = {"grammar": ESCAPING_GRAMMAR, "max_tokens": 40, "temperature": 0}

    async def main() -> None:
        app = make_app(client, told.url, "dark", refresh=0.3, generation=generation, chat_store=None)
        async with app.run_test(size=(160, 45), notifications=True) as pilot:
            table = app.query_one(ModelsTable)
            await until(pilot, lambda: "evil-broken" in table._rows and "target" in table._rows, what="the rows")
            row = table.get_row("evil-broken")
            assert_terminal_safe(" ".join(str(cell) for cell in row))
            table.move_cursor(row=table.get_row_index("evil-broken"))
            await pilot.pause(0.2)
            detail = str(app.screen.query_one("#model-detail", Static).render())
            assert "[bold red]x" in detail and "could not load" in detail, detail  # markup as text
            assert_terminal_safe(detail)

            await pilot.press("g")  # the worker's log
            await until(pilot, lambda: app.screen.__class__.__name__ == "LogView", what="the log view")
            log = app.screen.query_one(Log)
            await until(pilot, lambda: any("could not load" in line for line in log.lines), what="the log's lines")
            assert_terminal_safe("\n".join(log.lines))
            assert any("[bold red]x" in line for line in log.lines)
            await pilot.press("escape")

            app.dashboard.change(lambda: client.launch_model(model_name="evil-missing"), str)
            await until(pilot, lambda: any("not found" in n.message for n in app._notifications), what="the refusal")
            for note in app._notifications:
                assert not note.markup
                assert_terminal_safe(note.message)
            assert any("[bold red]x" in n.message for n in app._notifications)

            pane = app.query_one(ChatPane)
            pane.choose("target")
            await pane.send("x")
            await until(pilot, lambda: not pane.generating, what="the answer")
            assert pane.last_answer.startswith("\x1b]0;pwned")  # kept as the model wrote it
            answer = app.query(".answer").last()
            assert answer.source == " hi done", repr(answer.source)
            figures = str(app.query(".stats").last().render())
            assert_terminal_safe(figures)
            await pilot.press("ctrl+o")
            assert app.clipboard == " hi done"

    asyncio.run(main())


# --- fairness -----------------------------------------------------------------------------------------


def test_many_choices_leave_slots_to_other_clients(hostile: tuple[ServerProcess, str], small_gguf: Path) -> None:
    """n=16 on a model of 4 slots: its choices take all slots but one (half of them beside other requests),
    the rest start as those end, so another client's 4-token completion always finds a free slot instead of
    waiting behind all sixteen; every choice still comes back, whole and streamed. (SmolLM2: any model does.)"""
    srv, uid = hostile
    with http(srv, timeout=300) as h:
        answer = h.post("/v1/model_registrations/LLM", json={"model": gguf_spec("slots-target", small_gguf)})
        assert answer.status_code == 200, answer.text
        answer = h.post("/v1/models", json={"model_name": "slots-target", "model_uid": "slots4", "n_parallel": 4})
        assert answer.status_code == 200, answer.text
    many = {"model": "slots4", "prompt": "Tell me a story.", "n": 16, "max_tokens": 8, "ignore_eos": True,
            "temperature": 0.8, "seed": 7}
    peak, queued = [0], [0]
    answers: list[httpx.Response] = []

    def attack() -> None:
        stop = threading.Event()

        def watch() -> None:  # the model's requests in flight (the other client's one, and the choices)
            with http(srv) as w:
                while not stop.is_set():
                    described = w.get("/v1/models/slots4").json()
                    peak[0] = max(peak[0], described["metrics"]["in_flight"])
                    queued[0] = max(queued[0], described["queued"])
                    time.sleep(0.02)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            with http(srv, timeout=600) as h:
                answers.append(h.post("/v1/completions", json=many))
        finally:
            stop.set()
            watcher.join()

    try:
        added = latency_during(srv, "slots4", attack)
        body = answers[0].json()
        assert answers[0].status_code == 200, answers[0].text
        assert sorted(c["index"] for c in body["choices"]) == list(range(16))
        assert all(c["finish_reason"] == "length" for c in body["choices"])
        assert body["usage"]["completion_tokens"] == 16 * 8
        assert queued[0] == 0, f"{queued[0]} requests waited for a slot"
        assert 3 <= peak[0] <= 4, f"at most {peak[0]} requests in flight: 3 choices, and the other client's"
        # the slots above prove the share; the wait is a figure (3.5 s with all 16 choices in; 0.2 s measured
        # quiet, 1.1 s on a loaded 2-core run), bounded loosely so that losing the share still fails here
        assert added < 2.0, f"another client's 4-token completion waited {added:.2f} s longer during n=16"
        with http(srv, timeout=600) as h, h.stream("POST", "/v1/completions", json={**many, "stream": True}) as r:
            finished = {}
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    for choice in json.loads(line[6:])["choices"]:
                        if choice["finish_reason"]:
                            finished[choice["index"]] = choice["finish_reason"]
        assert finished == dict.fromkeys(range(16), "length")
    finally:
        Client(srv.url).terminate_model("slots4")
    assert_healthy(srv, uid)


def test_loads_on_request_take_turns_and_show_their_place(tmp_path: Path, small_gguf: Path) -> None:
    """Requests naming three registered models that are not running: one loads at a time (server.max_loading,
    1 by default), the others wait in line, and /v1/models says where each waits; every request is answered."""
    srv = ServerProcess(tmp_path)
    names = ("turn-a", "turn-b", "turn-c")
    try:
        with http(srv) as h:
            for name in names:
                answer = h.post("/v1/model_registrations/LLM", json={"model": gguf_spec(name, small_gguf)})
                assert answer.status_code == 200, answer.text
        answers: dict[str, httpx.Response] = {}

        def ask(name: str) -> None:
            with http(srv, timeout=600) as h:
                answers[name] = h.post("/v1/completions", json={"model": name, "prompt": "Hi", "max_tokens": 2})

        threads = [threading.Thread(target=ask, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        most, places = 0, set()
        with http(srv) as h:
            while any(thread.is_alive() for thread in threads):
                listing = h.get("/v1/models").json()["data"]
                most = max(most, sum(m.get("state") in ("loading", "launching") for m in listing))
                places |= {m["load_position"] for m in listing if m.get("state") == "queued to load"}
                time.sleep(0.03)
        for thread in threads:
            thread.join()
        assert {name: a.status_code for name, a in answers.items()} == dict.fromkeys(names, 200)
        assert most == 1, f"{most} models loaded at once"
        assert places == {1, 2}, places
        assert "waits its turn" in (tmp_path / "test-server.log").read_text()
    finally:
        srv.stop()


# --- smaller holes ------------------------------------------------------------------------------------


def test_names_and_uids_ending_in_a_newline_are_refused(hostile: tuple[ServerProcess, str], gguf_path: Path) -> None:
    """`$` lets a trailing newline through (re.match); names are checked whole (fullmatch, or pydantic's
    Rust regex): each is a one-line 4xx, nothing is registered, launched or written under such a name."""
    srv, uid = hostile
    before = workers(srv)
    with http(srv) as h:
        one_line_4xx(h.post("/v1/models", json={"model_name": "target", "model_uid": "evil\n"}), "model_uid")
        one_line_4xx(h.post("/v1/model_registrations/LLM", json={"model": gguf_spec("evil\n", gguf_path)}),
                     "model_name")
        spec = json.loads(gguf_spec("evil-id", gguf_path))
        spec["model_specs"][0]["model_id"] = "google/gemma-3-270m\n"
        one_line_4xx(h.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}), "model_id")
        spec["model_specs"][0].update(model_id="google/gemma-3-270m", model_size_in_billions="0_27\n")
        one_line_4xx(h.post("/v1/model_registrations/LLM", json={"model": json.dumps(spec)}), "model_size")
        one_line_4xx(h.post("/v1/models", json={"model_name": "target\n", "model_uid": "nl-name"}))
        one_line_4xx(h.post("/v1/models", json={"model_name": "target", "model_uid": "nl-env",
                                                "envs": {"OMP_NUM_THREADS\n": "1"}}), "envs")
        for route, body in (("/v1/completions", {"prompt": "Hi"}),
                            ("/v1/chat/completions", {"messages": [{"role": "user", "content": "Hi"}]})):
            for name in ("target\n", "Target\n"):  # a running model, and a registered name (loads on request)
                one_line_4xx(h.post(route, json={"model": name, "max_tokens": 2, **body}))
        listed = [m["id"] for m in h.get("/v1/models").json()["data"]]
        registered = [r["model_name"] for r in h.get("/v1/model_registrations/LLM").json()]
    assert not [name for name in listed + registered if "\n" in name or name in ("nl-name", "nl-env", "evil-id")]
    assert not [p.name for p in (srv.home / "logs").iterdir() if "\n" in p.name]
    assert workers(srv) == before
    assert_healthy(srv, uid)


# calls a client cannot act on (NaN, not offered, 1000 deep): test_scripted_tools.py, no weights needed


# --- found by trying to break it ---


def _rule_chain(n: int, head: str = "root::=", rule: str = "::=") -> str:
    names = [f"r{i:x}" for i in range(n + 1)]
    return f"{head}{names[0]}\n" + "".join(f'{names[i]}{rule}"a" {names[i + 1]}\n' for i in range(n)) \
        + f'{names[-1]}{rule}"b"\n'


CHAINED_FORMS = [
    # 4000 GBNF rules each naming the next (58 KiB, under the 64 KiB cap): SIGSEGV in llguidance's compiler
    {"grammar": _rule_chain(4000)},
    # the same as Lark (a `start:` line made llguidance read the GBNF field as Lark, past the GBNF checks)
    {"grammar": _rule_chain(4000, "start:", ":")},
    # 3000 $defs each a $ref to the next (105 KiB): SIGSEGV
    {"response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
        "$defs": {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(3000)} | {"d3000": {"type": "string"}},
        "$ref": "#/$defs/d0"}}}},
]


def test_chains_of_rules_crash_no_worker(hostile: tuple[ServerProcess, str], chatty: str) -> None:
    srv, _ = hostile
    client = Client(srv.url)
    pid = client.describe_model(chatty)["pid"]
    with http(srv) as h:
        for extra in CHAINED_FORMS:
            answer = h.post("/v1/chat/completions", json={
                "model": chatty, "messages": [{"role": "user", "content": "Write."}], "max_tokens": 8, **extra})
            one_line_4xx(answer)
    described = client.describe_model(chatty)
    assert described["pid"] == pid and described.get("restarts", 0) == 0, "the worker died"
    assert_healthy(srv, chatty)


def test_a_repetition_of_a_repetition_stalls_nobody(hostile: tuple[ServerProcess, str], chatty: str) -> None:
    """A 27-byte pattern: its masks take seconds on the engine's thread (every slot waits; seen: the attack
    10 s, another client's 4-token completion 6.5 s after it ended); 4000 items of `^a{4000}$`: 52 s for 4
    tokens, 10 s for the other client after (tests/backends/test_guidance.py:
    test_repetitions_of_repetitions_cost_each_token_bounded_work). Measured directly: latency_during takes its
    'before' after the attack, and a stall that outlasts the attacker's answer cancels out there."""
    srv, _ = hostile

    def other() -> float:
        with http(srv) as h:
            start = time.monotonic()
            assert h.post("/v1/completions", json={"model": chatty, "prompt": "Hi", "max_tokens": 4}).status_code == 200
            return time.monotonic() - start

    before = max(other() for _ in range(3))
    seen: list[float] = []
    done = threading.Event()

    def other_client() -> None:
        while not done.is_set():
            seen.append(other())

    thread = threading.Thread(target=other_client)
    thread.start()
    try:
        with http(srv, timeout=120) as h:
            answer = h.post("/v1/chat/completions", json={
                "model": chatty, "messages": [{"role": "user", "content": "Write."}], "max_tokens": 4,
                "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": {
                    "type": "string", "pattern": "^(?:a{4000}){4000}$"}}}})
        assert answer.status_code in (200, 400), answer.text[:300]
        seen.append(other())
    finally:
        done.set()
        thread.join()
    assert max(seen) - before < 1.0, f"the attack added {max(seen) - before:.2f} s to another client's completion"
