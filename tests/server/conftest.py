"""A real server on a real port, real worker processes, and the real gemma GGUF."""

from __future__ import annotations

import json
import os
import shutil
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

    def __init__(self, home: Path, api_key: str | None = None, host: str = "127.0.0.1",
                 env: dict[str, str] | None = None):
        self.home = home
        self.port = free_port()
        self.host = host
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "XITUI_HOME": str(home), "XITUI_CONFIG": str(home / "config.toml"), **(env or {})}
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


def _build_once(target: Path, build: object) -> Path:
    """Build a model directory once (under a lock, renamed into place whole) and keep it in the test cache."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=900):
        if not (target / "config.json").is_file():
            partial = target.with_name(target.name + ".part")
            shutil.rmtree(partial, ignore_errors=True)
            build(partial)  # type: ignore[operator]
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
    return target


@pytest.fixture(scope="session")
def gemma_pt_dir(gguf_path: Path) -> Path:
    """Real weights as a PyTorch model: the gemma GGUF dequantised into a safetensors directory (~1.1 GB)."""

    def build(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):  # transformers marks GGUF loads as quantized: they are not now
            delattr(config, "quantization_config")
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    return _build_once(TEST_CACHE / "gemma-3-270m-pt", build)


@pytest.fixture(scope="session")
def tiny_pt_dir(gguf_path: Path) -> Path:
    """A tiny randomly initialised Llama with gemma's tokenizer: fast, for the mechanics of generation."""

    def build(out: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        LlamaForCausalLM(config).save_pretrained(out)
        tokenizer.save_pretrained(out)

    return _build_once(TEST_CACHE / "tiny-llama-gemma-tok", build)


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
