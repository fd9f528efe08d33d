"""Downloads by model_id through huggingface_hub, against a local server that answers like the Hub."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fake_hub import FakeHub
from tests.model_files import minilm_dir
from tests.server.conftest import ServerProcess
from xitui.client import Client, ClientError

REPO = "sentence-transformers/all-MiniLM-L6-v2"
GGUF_REPO = "HuggingFaceTB/SmolLM2-135M-GGUF"


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, small_gguf: Path) -> Iterator[FakeHub]:
    gguf_repo = tmp_path_factory.mktemp("gguf-repo")
    os.link(small_gguf, gguf_repo / "SmolLM2-135M-q4_1.gguf")
    (gguf_repo / "SmolLM2-135M-q8_0.gguf").write_bytes(b"GGUF" + b"\0" * 4096)  # must not be fetched
    (gguf_repo / "README.md").write_text("smollm2")
    fake = FakeHub({REPO: minilm_dir(), GGUF_REPO: gguf_repo}, delay=0.02)
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def hub_server(tmp_path_factory: pytest.TempPathFactory, hub: FakeHub) -> Iterator[ServerProcess]:
    home = tmp_path_factory.mktemp("hub-home")
    # the default Hugging Face cache is under the user's home: this one's is the test's own
    env = {"HF_ENDPOINT": hub.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HOME": str(home)}
    for key in ("HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "XDG_CACHE_HOME"):
        os.environ.pop(key, None)
    srv = ServerProcess(home, env=env)
    yield srv
    srv.stop()


def embedding_spec(name: str, model_id: str = REPO) -> str:
    return json.dumps({"model_name": name, "dimensions": 384, "max_tokens": 256, "language": ["en"],
                       "model_id": model_id})


def test_download_shows_progress_then_a_relaunch_needs_no_network(hub: FakeHub, hub_server: ServerProcess) -> None:
    client = Client(hub_server.url)
    client.register_model("embedding", embedding_spec("hub-minilm"))
    uid = client.launch_model(model_name="hub-minilm", model_type="embedding", wait_ready=False)
    seen: list[tuple[float, str]] = []
    deadline = time.monotonic() + 120
    while (state := client.get_launch_model_progress(uid))["state"] == "launching":
        seen.append((state["progress"], state["stage"]))
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert state["state"] == "ready", state
    downloading = [p for p, stage in seen if stage.startswith("downloading")]
    assert len(set(downloading)) >= 3 and all(0 < p < 1 for p in downloading)
    assert downloading == sorted(downloading)
    cached = hub_server.home / ".cache" / "huggingface" / "hub" / "models--sentence-transformers--all-MiniLM-L6-v2"
    assert any(cached.rglob("model.safetensors"))
    vec = client.get_model(uid).create_embedding("downloaded")["data"][0]["embedding"]
    assert len(vec) == 384
    client.terminate_model(uid)

    asked = len(hub.requests)
    # no network now (nothing listens on port 9): the cache must do, and the Hub hears nothing
    uid = client.launch_model(model_name="hub-minilm", model_type="embedding",
                              envs={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert len(client.get_model(uid).create_embedding("from cache")["data"][0]["embedding"]) == 384
    client.terminate_model(uid)
    assert len(hub.requests) == asked  # (HF_HUB_OFFLINE with a cached model: tests/server/test_model_cache.py)


def test_gguf_download_fetches_only_the_named_file(hub: FakeHub, hub_server: ServerProcess) -> None:
    client = Client(hub_server.url)
    spec = {"version": 2, "model_name": "hub-smollm2", "model_lang": ["en"], "model_ability": ["generate"],
            "model_family": "other", "context_length": 1024,
            "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_135", "quantization": "q4_1",
                             "model_id": GGUF_REPO, "model_file_name_template": "SmolLM2-135M-{quantization}.gguf"}]}
    client.register_model("LLM", json.dumps(spec))
    uid = client.launch_model(model_name="hub-smollm2")
    try:
        out = client.get_model(uid).generate("One, two, three,", {"max_tokens": 4, "temperature": 0})
        assert out["choices"][0]["text"].startswith(" four")
    finally:
        client.terminate_model(uid)
    fetched = [r for r in hub.requests if r.startswith(f"GET /{GGUF_REPO}/resolve/")]
    assert fetched and all(r.endswith("SmolLM2-135M-q4_1.gguf") for r in fetched)


def test_download_errors_are_one_line(hub_server: ServerProcess) -> None:
    client = Client(hub_server.url)
    client.register_model("embedding", embedding_spec("ghost", model_id="nobody/no-such-model"))
    cases = [
        ({}, "was not found"),
        ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE is set"),
        ({"HF_ENDPOINT": "http://127.0.0.1:9"}, "cannot be reached"),
    ]
    for envs, words in cases:
        with pytest.raises(ClientError) as err:
            client.launch_model(model_name="ghost", model_type="embedding", envs=envs)
        assert words in str(err.value) and "\n" not in str(err.value), str(err.value)
        assert err.value.status_code == 400
    assert "ghost" not in client.list_models()
