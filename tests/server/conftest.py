"""A real server on a real port, real worker processes, and the real gemma GGUF; and a server of scripted models
(no weights) for the quick tier. The helpers live in tests/support; their old names here still import."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import model_files
from tests.support.servers import ServerProcess, configured_server, free_port, scripted_server
from tests.support.specs import gguf_spec, pytorch_spec
from xitui.client import Client

__all__ = ["ServerProcess", "configured_server", "free_port", "gguf_spec", "pytorch_spec"]


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    """The 253 MB gemma-3-270m Q4_K_M GGUF, assembled once into the test cache."""
    return model_files.gguf_path()


@pytest.fixture(scope="session")
def small_gguf() -> Path:
    """SmolLM2 135M's GGUF (tests/model_files.py): for tests where any GGUF does."""
    return model_files.smol_path()


@pytest.fixture(scope="module")
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           gguf_path: Path) -> Iterator[ServerProcess]:
    """A module's real server. Its warm worker imports llama.cpp only (tests/conftest.py), unless the module
    names the engines its launches use in `WARM` (a transformers launch forks in ~5 s, ~11 s cold)."""
    warm = getattr(request.module, "WARM", None)
    srv = ServerProcess(tmp_path_factory.mktemp("server-home"), env={"XITUI_WARM": warm} if warm else None)
    if warm:  # the module's first launch forks too: a launch while the imports run would start cold (~11 s)
        srv.wait_warm()
    yield srv
    srv.stop()


@pytest.fixture(scope="session")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for every scripted test (each launches its own models): its engine needs no weights, so a
    test that uses it stays in the quick tier. Without the warm worker: a scripted worker imports nothing heavy
    (a cold start is 0.5 s), and a server with one takes 3.4 s to stop, against 0.4 s without."""
    with scripted_server(tmp_path_factory.mktemp("scripted-home"), env={"XITUI_WARM": "none"}) as srv:
        yield srv


@pytest.fixture(scope="session")
def gemma_pt_dir(gguf_path: Path) -> Path:
    return model_files.gemma_pt_dir()


@pytest.fixture(scope="session")
def tiny_pt_dir(gguf_path: Path) -> Path:
    return model_files.tiny_pt_dir()


#: The chat template the transformers Gemma below answers with (the base model has none of its own).
TORCH_TEMPLATE = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"


@pytest.fixture(scope="session")
def torch_gemma(tmp_path_factory: pytest.TempPathFactory, gemma_pt_dir: Path) -> Iterator[tuple[ServerProcess, str]]:
    """One server with the Gemma 3 safetensors running on transformers (4 slots, a chat template, tools), shared
    by the batching and structured-output tests of that engine: its server, warm, and its launch take ~9 s."""
    srv = ServerProcess(tmp_path_factory.mktemp("torch-home"), env={"XITUI_WARM": "llama.cpp,transformers"})
    try:
        srv.wait_warm()
        client = Client(srv.url)
        spec = pytorch_spec("torch-gemma", gemma_pt_dir, version=2, chat_template=TORCH_TEMPLATE,
                            model_ability=["generate", "chat", "tools"])
        client.register_model("LLM", spec.replace('"quantizations": ["4-bit", "8-bit", "none"]', '"quantization": "none"'))
        uid = client.launch_model(model_name="torch-gemma", model_format="pytorch", model_engine="transformers",
                                   n_parallel=4)
        yield srv, uid
    finally:
        srv.stop()
