"""A real server on a real port, real worker processes, and the real gemma GGUF."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TEST_CACHE


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m xitui.server` in a subprocess with its own XITUI_HOME."""

    def __init__(self, home: Path, api_key: str | None = None, host: str = "127.0.0.1"):
        self.home = home
        self.port = free_port()
        self.host = host
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "XITUI_HOME": str(home), "XITUI_CONFIG": str(home / "config.toml")}
        env.pop("XITUI_SERVER_API_KEY", None)
        if api_key:
            env["XITUI_SERVER_API_KEY"] = api_key
        self.log = open(home / "test-server.log", "ab")  # noqa: SIM115 - open for the server's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xitui.server", "--host", host, "--port", str(self.port)],
            stdout=self.log, stderr=self.log, env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {(home / 'test-server.log').read_text()}") from None
                time.sleep(0.02)
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    """The 253 MB gemma-3-270m Q4_K_M GGUF, assembled once into the test cache."""
    from xitui.core import bundled

    os.environ["XITUI_CACHE"] = str(TEST_CACHE)
    bundled.prepare("demo-gemma3-270m", lambda p, s: None)
    return TEST_CACHE / "models" / bundled.GEMMA_FILE


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, gguf_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("server-home"))
    yield srv
    srv.stop()


def gguf_spec(name: str, gguf: Path, *, version: int = 1, **extra: object) -> str:
    """The documentation's LLM JSON for a GGUF file (version 1: quantizations list; 2: one quantization)."""
    spec: dict[str, object] = {
        "version": version,
        "context_length": 2048,
        "model_name": name,
        "model_lang": ["en"],
        "model_ability": ["generate", "chat"],
        "model_family": "other",
        "prompt_style": "GEMMA",
        "model_specs": [{
            "model_format": "ggufv2",
            "model_size_in_billions": "0_27",
            ("quantizations" if version == 1 else "quantization"): ["q4_k_m"] if version == 1 else "q4_k_m",
            "model_id": "google/gemma-3-270m",
            "model_file_name_template": "gemma-3-270m-{quantization}.gguf",
            "model_uri": f"file://{gguf.parent}",
        }],
    }
    spec.update(extra)
    return json.dumps(spec)
