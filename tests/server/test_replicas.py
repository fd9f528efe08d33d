"""Replicas: several worker processes behind one model uid, the least busy serving each request."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.server.conftest import ServerProcess, gguf_spec
from tests.support.models import launched
from xitui.client import Client


def test_two_replicas_share_the_load_and_survive_one_dying(server: ServerProcess, small_gguf: Path) -> None:
    client = Client(server.url)
    with launched(client, "twins", gguf_spec("twins", small_gguf), replica=2) as uid:
        desc = client.describe_model(uid)
        assert desc["replica"] == 2 and desc["state"] == "ready"
        pids = [r["pid"] for r in desc["replicas"]]
        assert len(set(pids)) == 2 and all(r["state"] == "ready" for r in desc["replicas"])
        assert {p["pid"] for p in _gpu_free_owners(client, uid)} == set(pids)

        def one(i: int) -> str:
            own = Client(server.url)
            return own.get_model(uid).generate(f"Count to {i}:", {"max_tokens": 24, "temperature": 0})["choices"][0]["text"]

        with ThreadPoolExecutor(4) as pool:
            texts = list(pool.map(one, range(4)))
        assert all(texts)
        desc = client.describe_model(uid)
        served = [r["metrics"]["requests"] for r in desc["replicas"]]
        assert served == [2, 2], served  # four at once: the least busy takes each
        assert desc["metrics"]["requests"] == 4

        # one replica dies mid-request: that request fails, the other replica keeps serving while the dead one
        # alone is restarted
        stream = client.get_model(uid).generate("Once upon a time", {"max_tokens": 200, "stream": True})
        next(stream)
        busy = [r for r in client.describe_model(uid)["replicas"] if r["metrics"]["in_flight"]]
        victim, index = busy[0]["pid"], busy[0]["index"]
        survivor = desc["replicas"][1 - index]["pid"]
        os.kill(victim, signal.SIGKILL)
        try:
            for _ in stream:
                pass
            raise AssertionError("the stream of a killed replica ended without an error")
        except Exception as exc:  # noqa: BLE001 - the client raises ClientError for the error chunk
            assert "its worker died (SIGKILL, probably the out-of-memory killer) while answering" in str(exc)
        for i in range(3):
            assert one(i)
        deadline = time.monotonic() + 60
        while not all(r["state"] == "ready" for r in client.describe_model(uid)["replicas"]):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        desc = client.describe_model(uid)
        assert desc["state"] == "ready" and desc["error"] is None and desc["restarts"] == 1
        pids = [r["pid"] for r in desc["replicas"]]
        assert pids[1 - index] == survivor and pids[index] not in (victim, survivor)
        # each replica keeps its own log
        assert client.model_logs(uid)["offset"] >= 0


def _gpu_free_owners(client: Client, uid: str) -> list[dict[str, int]]:
    """The replicas' processes as /status lists them (what the dashboard's memory panel names)."""
    return [{"pid": pid} for pid in client.status()["workers"][uid]["pids"]]


def test_a_replica_that_cannot_launch_fails_the_launch(server: ServerProcess, tmp_path: Path) -> None:
    client = Client(server.url)
    bad = tmp_path / "gemma-3-270m-q4_k_m.gguf"
    bad.write_bytes(b"not a gguf file at all")
    client.register_model("LLM", gguf_spec("bad-twins", bad))
    try:
        client.launch_model(model_name="bad-twins", replica=2)
        raise AssertionError("the launch succeeded")
    except Exception as exc:  # noqa: BLE001
        assert "not a GGUF file" in str(exc)
    assert "bad-twins" not in client.list_models()
