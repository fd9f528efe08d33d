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

from tests import model_files


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m xitui.server` in a subprocess with its own XITUI_HOME."""

    def __init__(self, home: Path, api_key: str | None = None, host: str = "127.0.0.1",
                 env: dict[str, str] | None = None, args: tuple[str, ...] = (), port: int | None = None):
        self.home = home
        self.port = port or free_port()
        self.host = host
        # a server bound to ::1 alone is reached there; any other loopback bind answers on 127.0.0.1
        connect_to = "::1" if host.strip("[]") == "::1" else "127.0.0.1"
        self.url = f"http://{'[::1]' if connect_to == '::1' else connect_to}:{self.port}"
        env = {**os.environ, "XITUI_HOME": str(home), "XITUI_CONFIG": str(home / "config.toml"), **(env or {})}
        env.pop("XITUI_SERVER_API_KEY", None)
        if api_key:
            env["XITUI_SERVER_API_KEY"] = api_key
        self.log = open(home / "test-server.log", "ab")  # noqa: SIM115 - open for the server's lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xitui.server", "--host", host, "--port", str(self.port), *args],
            stdout=self.log, stderr=self.log, env=env,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((connect_to, self.port), timeout=0.2):
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


def configured_server(tmp_path_factory: pytest.TempPathFactory, name: str, toml: str) -> ServerProcess:
    """A server whose home starts with `toml` as its config.toml."""
    home = tmp_path_factory.mktemp(name)
    (home / "config.toml").write_text(toml)
    return ServerProcess(home)


@pytest.fixture(scope="session")
def gguf_path() -> Path:
    """The 253 MB gemma-3-270m Q4_K_M GGUF, assembled once into the test cache."""
    return model_files.gguf_path()


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


@pytest.fixture(scope="session")
def gemma_pt_dir(gguf_path: Path) -> Path:
    return model_files.gemma_pt_dir()


@pytest.fixture(scope="session")
def tiny_pt_dir(gguf_path: Path) -> Path:
    return model_files.tiny_pt_dir()


def pytorch_spec(name: str, directory: Path, **extra: object) -> str:
    """The documentation's pytorch LLM JSON (version 1, three quantizations) for a local directory."""
    spec: dict[str, object] = {
        "version": 1,
        "context_length": 2048,
        "model_name": name,
        "model_lang": ["en"],
        "model_ability": ["generate"],
        "model_family": "other",
        "model_specs": [{
            "model_format": "pytorch",
            "model_size_in_billions": 7,
            "quantizations": ["4-bit", "8-bit", "none"],
            "model_id": "meta-llama/Llama-2-7b",
            "model_uri": f"file://{directory}",
        }],
    }
    spec.update(extra)
    return json.dumps(spec)
