"""The warm worker: launches forked from a process that imported the engines' libraries already.

The servers here keep every engine warm (XITUI_WARM=all, the default users get); the rest of the suite keeps
only llama.cpp warm, which is cheap to import and still forks every launch. One server is shared by the tests
that start from a ready warm worker (each ends its own models: one test counts the warm worker's children);
the one that kills the warm worker comes last.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from tests.conftest import run_env, xitui_cmd
from tests.server.conftest import ServerProcess, gguf_spec
from tests.support.models import launched
from xitui.client import Client


def wait_for(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def warm_state(client: Client) -> dict:
    return client.status()["warm_worker"]


@pytest.fixture()
def warm_server(tmp_path: Path, small_gguf: Path) -> Iterator[ServerProcess]:
    """A server of its own, for a test that sees its warm worker start."""
    (tmp_path / "home").mkdir()
    srv = ServerProcess(tmp_path / "home", env={"XITUI_WARM": "all"})
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def shared_warm(tmp_path_factory: pytest.TempPathFactory, small_gguf: Path) -> Iterator[ServerProcess]:
    """The server of the tests that start from a ready warm worker (its imports take seconds)."""
    srv = ServerProcess(tmp_path_factory.mktemp("warm-home"), env={"XITUI_WARM": "all"})
    yield srv
    srv.stop()


def ready_warm(client: Client) -> dict:
    wait_for(lambda: warm_state(client)["state"] == "ready", 90, "the warm worker")
    return warm_state(client)


def private_dirty(pid: int) -> int:
    """Memory only this process holds and that only its end gives back: written pages no other process
    maps (not the warm worker's pages it still shares, nor file pages, which stay cached)."""
    with open(f"/proc/{pid}/smaps_rollup") as fh:
        return next(int(line.split()[1]) * 1024 for line in fh if line.startswith("Private_Dirty:"))


def replica(client: Client, uid: str) -> dict:
    return client.describe_model(uid)["replicas"][0]


def gone(pid: int, zombie_ok: bool = False) -> bool:
    """The process has ended and was reaped; `zombie_ok`: or is a zombie (ended, holding no memory), for
    an orphan whose reaping is up to the machine's init."""
    try:
        status = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return True
    return zombie_ok and status == psutil.STATUS_ZOMBIE


def test_a_launch_while_the_warm_worker_starts_goes_cold_then_launches_fork(warm_server: ServerProcess,
                                                                            small_gguf: Path) -> None:
    client = Client(warm_server.url)
    client.register_model("LLM", gguf_spec("early", small_gguf))
    assert warm_state(client)["state"] == "starting"  # torch and friends take seconds to import
    uid = client.launch_model(model_name="early", n_parallel=1)
    first = replica(client, uid)
    assert first["state"] == "ready" and first["start"] == "cold"
    assert client.get_model(uid).generate("Hello", {"max_tokens": 4})["choices"][0]["text"]

    warm = ready_warm(client)
    assert warm["loaded"] == ["llama.cpp", "transformers", "sentence_transformers"]
    uid2 = client.launch_model(model_name="early", model_uid="early-2", n_parallel=1)
    second = replica(client, uid2)
    assert second["start"] == "warm"
    # the launch is reported by stage; importing cost nothing, the libraries were there
    assert set(second["stages"]) >= {"process", "import", "weights"}
    assert second["stages"]["import"] < 0.05 < second["stages"]["weights"]
    assert psutil.Process(second["pid"]).ppid() == warm["pid"]
    same = client.get_model(uid2).generate("Hello", {"max_tokens": 8, "temperature": 0})["choices"][0]["text"]
    assert same == client.get_model(uid).generate("Hello", {"max_tokens": 8, "temperature": 0})["choices"][0]["text"]


def test_two_launches_at_once_both_fork_and_serve(shared_warm: ServerProcess, small_gguf: Path) -> None:
    warm_server = shared_warm
    client = Client(warm_server.url)
    client.register_model("LLM", gguf_spec("pair", small_gguf))
    forks = ready_warm(client)["forks"]
    uids: list[str] = []
    errors: list[BaseException] = []

    def launch(name: str, kind: str) -> None:
        try:
            own = Client(warm_server.url)
            if kind == "embedding":
                uids.append(own.launch_model(model_name="demo-minilm", model_type="embedding", model_uid=name))
            else:
                uids.append(own.launch_model(model_name="pair", model_uid=name, n_parallel=1))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=launch, args=("a", "LLM")), threading.Thread(target=launch, args=("b", "embedding"))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert not errors, errors
        assert sorted(uids) == ["a", "b"]
        a, b = replica(client, "a"), replica(client, "b")
        assert a["start"] == b["start"] == "warm" and a["pid"] != b["pid"]
        assert "warm-up" in b["stages"]  # the embedding model ran once before it was called ready
        assert client.get_model("a").generate("Hi", {"max_tokens": 4})["choices"][0]["text"]
        vectors = client.get_model("b").create_embedding(["one", "two"])["data"]
        assert len(vectors) == 2 and len(vectors[0]["embedding"]) == 384
        assert warm_state(client)["forks"] == forks + 2
    finally:
        for uid in uids:
            client.terminate_model(uid)


def test_terminating_a_forked_model_frees_its_memory(shared_warm: ServerProcess, gemma_pt_dir: Path) -> None:
    from tests.server.conftest import pytorch_spec

    warm_server = shared_warm
    client = Client(warm_server.url)
    client.register_model("LLM", pytorch_spec("heavy", gemma_pt_dir))
    warm = ready_warm(client)
    tree = [warm_server.proc.pid, warm["pid"]]  # the server and the warm worker: all that stays
    held_before = sum(private_dirty(p) for p in tree)
    uid = client.launch_model(model_name="heavy", model_format="pytorch", model_engine="transformers")
    worker = replica(client, uid)
    assert worker["start"] == "warm" and worker["stages"]["warm-up"] > 0
    pid = worker["pid"]
    assert psutil.Process(pid).ppid() == warm["pid"]
    assert private_dirty(pid) > 300 * 2**20  # weights copied out of the file (the rest are mapped from it)
    client.terminate_model(uid)
    # reaped (not a zombie): the kernel has taken back every page only it held...
    wait_for(lambda: gone(pid), 10, "the worker to end and be reaped")
    assert not psutil.Process(warm["pid"]).children()
    # ...and none of it stayed with the server or the warm worker (the weights never entered either)
    assert sum(private_dirty(p) for p in tree) < held_before + 64 * 2**20


def test_launches_that_set_library_variables_start_cold(shared_warm: ServerProcess, small_gguf: Path) -> None:
    client = Client(shared_warm.url)
    ready_warm(client)
    # libraries read OMP_NUM_THREADS when they are imported: a forked worker would not see it
    with launched(client, "envs", gguf_spec("envs", small_gguf), n_parallel=1, envs={"OMP_NUM_THREADS": "1"}) as uid:
        assert replica(client, uid)["start"] == "cold"
        # xitui's own variables are read at load time: those launches still fork
        with launched(client, "envs", model_uid="envs-2", n_parallel=1, envs={"XITUI_THREADS": "1"}) as uid2:
            desc = client.describe_model(uid2)
            assert desc["replicas"][0]["start"] == "warm" and desc["n_threads"] == 1


def test_warm_worker_setting(tmp_path: Path, small_gguf: Path) -> None:
    import subprocess

    home = tmp_path / "home"
    home.mkdir()
    env = run_env(XITUI_HOME=str(home), XITUI_CONFIG=str(home / "config.toml"))
    bad = subprocess.run([*xitui_cmd(), "config", "set", "server.warm", "llama.cpp,vllm"], env=env,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "vllm is not an engine" in bad.stderr and "Traceback" not in bad.stderr
    ok = subprocess.run([*xitui_cmd(), "config", "set", "server.warm", "none"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    srv = ServerProcess(home, env={"XITUI_WARM": ""})
    try:
        client = Client(srv.url)
        assert warm_state(client)["state"] == "off"
        client.register_model("LLM", gguf_spec("cold", small_gguf))
        uid = client.launch_model(model_name="cold", n_parallel=1)
        assert replica(client, uid)["start"] == "cold"
    finally:
        srv.stop()


def test_the_cli_says_where_a_launch_went(shared_warm: ServerProcess) -> None:
    import subprocess

    warm_server = shared_warm
    client = Client(warm_server.url)
    ready_warm(client)
    env = run_env(XITUI_ENDPOINT=warm_server.url)
    done = subprocess.run([*xitui_cmd(), "launch", "-n", "demo-minilm", "-t", "embedding"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "(warm start): process" in done.stderr and "weights" in done.stderr and "warm-up" in done.stderr
    listed = subprocess.run([*xitui_cmd(), "list"], env=env, capture_output=True, text=True, timeout=60)
    row = next(line for line in listed.stdout.splitlines() if line.startswith("demo-minilm"))
    assert row.endswith("s (warm start)"), row
    doctor = subprocess.run([*xitui_cmd(), "doctor"], env=env, capture_output=True, text=True, timeout=60)
    client.terminate_model("demo-minilm")
    assert "ok: launches fork from the warm worker (llama.cpp, transformers, sentence_transformers imported" \
        in doctor.stdout + doctor.stderr, doctor.stdout + doctor.stderr


def test_a_dead_warm_worker_is_replaced_and_launches_go_on(shared_warm: ServerProcess, small_gguf: Path) -> None:
    warm_server = shared_warm
    client = Client(warm_server.url)
    client.register_model("LLM", gguf_spec("phoenix", small_gguf))
    before = ready_warm(client)
    uid = client.launch_model(model_name="phoenix", n_parallel=1)  # forked: it outlives its warm parent
    assert replica(client, uid)["start"] == "warm"
    os.kill(before["pid"], signal.SIGKILL)
    wait_for(lambda: warm_state(client)["pid"] != before["pid"], 10, "a new warm worker")
    # the launch right after does not wait for the new one's imports
    uid2 = client.launch_model(model_name="phoenix", model_uid="phoenix-2", n_parallel=1)
    assert replica(client, uid2)["start"] == "cold"
    after = ready_warm(client)
    assert after["restarts"] == 1 and after["pid"] != before["pid"]
    uid3 = client.launch_model(model_name="phoenix", model_uid="phoenix-3", n_parallel=1)
    assert replica(client, uid3)["start"] == "warm"
    for each in (uid, uid2, uid3):
        assert client.get_model(each).generate("Hi", {"max_tokens": 4})["choices"][0]["text"]
    # the orphaned worker still ends cleanly when terminated
    orphan = replica(client, uid)["pid"]
    client.terminate_model(uid)
    wait_for(lambda: gone(orphan, zombie_ok=True), 10, "the orphaned worker to end")
    log = (warm_server.home / "test-server.log").read_text()
    assert "warm worker killed by signal 9; starting another" in log
