"""The standard Hugging Face cache: files other tools put there are used as they are; `xitui pull` fills it
without launching, `xitui cache list|remove` show and free it. The Hub is a local fake (tests/fake_hub.py)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import xitui_cmd
from tests.fake_hub import COMMIT, FakeHub
from tests.server.conftest import ServerProcess
from xitui.client import Client

#: SmolLM2's GGUF (tests/model_files.py): any GGUF does, this one loads in 0.5 s.
REPO = "someone/SmolLM2-135M-GGUF"
FILE = "SmolLM2-135M-q4_1.gguf"
HF_VARS = ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "XDG_CACHE_HOME", "HF_ENDPOINT")


def spec(name: str) -> str:
    return json.dumps({"version": 2, "model_name": name, "model_lang": ["en"], "model_ability": ["generate"],
                       "model_family": "other", "context_length": 1024,
                       "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_135",
                                        "quantization": "q4_1", "model_id": REPO,
                                        "model_file_name_template": "SmolLM2-135M-{quantization}.gguf"}]})


def place_in_cache(hub_cache: Path, gguf: Path) -> None:
    """The file as huggingface_hub (or `huggingface-cli download`) leaves it: a blob, a snapshot link, a ref."""
    repo = hub_cache / f"models--{REPO.replace('/', '--')}"
    (repo / "blobs").mkdir(parents=True)
    os.link(gguf, repo / "blobs" / "0f1e2d")
    (repo / "snapshots" / COMMIT).mkdir(parents=True)
    (repo / "snapshots" / COMMIT / FILE).symlink_to(Path("../../blobs/0f1e2d"))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in HF_VARS}
    return {**env, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", **extra}


def generates(server: ServerProcess, name: str) -> str:
    client = Client(server.url)
    client.register_model("LLM", spec(name))
    uid = client.launch_model(model_name=name)
    try:
        return client.get_model(uid).generate("One, two, three,", {"max_tokens": 4, "temperature": 0})["choices"][0]["text"]
    finally:
        client.terminate_model(uid)


@pytest.mark.parametrize("where", ["HF_HOME", "default"])
def test_a_file_already_in_the_hugging_face_cache_is_used_with_the_network_off(tmp_path: Path, small_gguf: Path,
                                                                                where: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    if where == "HF_HOME":
        place_in_cache(tmp_path / "hf" / "hub", small_gguf)
        env = clean_env(HF_HOME=str(tmp_path / "hf"), HOME=str(home))
    else:  # ~/.cache/huggingface/hub, what transformers uses when nothing is set
        place_in_cache(home / ".cache" / "huggingface" / "hub", small_gguf)
        env = clean_env(HOME=str(home))
    (tmp_path / "xitui").mkdir()
    # no Hub to reach: nothing listens on port 9
    server = ServerProcess(tmp_path / "xitui", env={**env, "HF_ENDPOINT": "http://127.0.0.1:9"})
    try:
        assert generates(server, f"cached-{where.lower()}").startswith(" four")
    finally:
        server.stop()


@pytest.fixture
def hub(tmp_path: Path, small_gguf: Path) -> Iterator[FakeHub]:
    repo = tmp_path / "repo"
    repo.mkdir()
    os.link(small_gguf, repo / FILE)
    (repo / "SmolLM2-135M-q8_0.gguf").write_bytes(b"GGUF" + b"\0" * 4096)  # another quantization: not pulled
    fake = FakeHub({REPO: repo})
    yield fake
    fake.stop()


def test_pull_then_launch_with_the_network_off_then_list_and_remove(tmp_path: Path, hub: FakeHub,
                                                                    small_gguf: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (tmp_path / "xitui").mkdir()
    server = ServerProcess(tmp_path / "xitui", env=clean_env(HOME=str(home), HF_HUB_OFFLINE="1"))
    env = clean_env(HOME=str(home), HF_ENDPOINT=hub.url, XITUI_HOME=str(tmp_path / "xitui"))

    def xitui(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*xitui_cmd(), *args, "-e", server.url], capture_output=True, text=True, env=env,
                              timeout=120)

    try:
        Client(server.url).register_model("LLM", spec("pulled"))
        pulled = xitui("pull", "pulled")
        assert pulled.returncode == 0, pulled.stderr
        assert f"pulling {REPO} ({FILE})" in pulled.stderr and "ready to launch" in pulled.stderr
        fetched = [r for r in hub.requests if "/resolve/" in r]
        assert fetched and all(r.endswith(FILE) for r in fetched)  # the one file a launch uses
        # the server runs with HF_HUB_OFFLINE: the launch finds what pull fetched
        client = Client(server.url)
        uid = client.launch_model(model_name="pulled")
        client.terminate_model(uid)

        listed = json.loads(xitui("cache", "list", "--json").stdout)
        assert [(r["repo_id"], r["registrations"]) for r in listed] == [(REPO, ["pulled"])]
        assert listed[0]["size"] == small_gguf.stat().st_size
        removed = xitui("cache", "remove", "pulled")
        assert removed.returncode == 0 and "freed" in removed.stderr, removed.stderr
        assert json.loads(xitui("cache", "list", "--json").stdout) == []
        again = xitui("cache", "remove", "pulled")
        assert again.returncode == 1 and again.stderr.startswith("error: nothing of pulled is in the cache")
        assert Client(server.url).get_model_registration("LLM", "pulled")["model_name"] == "pulled"  # kept
    finally:
        server.stop()
