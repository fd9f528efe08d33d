"""Shared fixtures: an isolated XITUI_HOME and config file for every test."""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.model_files import TEST_CACHE

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
#: Model files built once (the assembled GGUF, the dequantised safetensors model) and kept between runs.
os.environ.setdefault("XITUI_CACHE", str(TEST_CACHE))
#: Servers in tests keep only llama.cpp warm (0.1 s to import, against 3.6 s for torch and friends): every
#: launch still forks from the warm worker; tests/server/test_warm_worker.py runs the default, all engines.
os.environ.setdefault("XITUI_WARM", "llama.cpp")
#: A pexpect terminal does not answer prompt_toolkit's cursor-position request (a real terminal and tmux do),
#: so every question of the wizard waited 1 s for the answer before drawing (13 s of the wizard's pty test).
os.environ.setdefault("PROMPT_TOOLKIT_NO_CPR", "1")
#: On several processes (pytest-xdist), every model runs on one thread, the direct libraries the tests compare with
#: too: llama.cpp's threads wait for each other at every step, so two of them on a core another process holds
#: ran 3x slower than one (SmolLM2: 32 against 68 tok/s; alone, two threads make 98). Greedy text and
#: log probabilities are the same bits on one thread as on two (measured on both GGUFs).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("XITUI_THREADS", "1")
#: The threads a test gives a library it drives directly.
THREADS = int(os.environ.get("XITUI_THREADS") or 2)


#: Fixtures that start a real server or build model files: a test using one is `slow`.
SLOW_FIXTURES = frozenset({"server", "gemma_pt_dir", "tiny_pt_dir", "cluster"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `slow` every test that starts real servers or loads models (a fixture that does, or a module
    that starts its own ServerProcess), so `scripts/test -m "not slow"` is the quick loop."""
    for item in items:
        module = getattr(item, "module", None)
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or getattr(module, "ServerProcess", None):
            item.add_marker(pytest.mark.slow)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """`--dist loadfile` (the slow tier) hands out the longest module first: tests/support/schedule.py."""
    if config.getvalue("dist") == "loadfile":
        from tests.support.schedule import LongestFirst

        return LongestFirst(config, log)
    return None


@pytest.fixture(autouse=True)
def xitui_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own XITUI_HOME and config file, so nothing leaks between tests or to the user."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("XITUI_HOME", str(home))
    monkeypatch.setenv("XITUI_CONFIG", str(home / "config.toml"))
    monkeypatch.delenv("XITUI_ENDPOINT", raising=False)
    monkeypatch.delenv("XITUI_API_KEY", raising=False)
    return home


def xitui_cmd() -> list[str]:
    """The installed `xitui` console script next to this interpreter."""
    script = Path(sys.executable).with_name("xitui")
    return [str(script)] if script.exists() else [sys.executable, "-m", "xitui"]


def run_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def has_ipv6_loopback() -> bool:
    """Whether this machine can bind ::1 (some containers have no IPv6)."""
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


@contextlib.contextmanager
def peak_rss(process: Any, every: float = 0.005) -> Iterator[list[int]]:
    """[RSS before, highest RSS seen] of a psutil process while the block runs (sampled every `every` s)."""
    seen = [process.memory_info().rss] * 2
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            seen[1] = max(seen[1], process.memory_info().rss)
            time.sleep(every)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        yield seen
    finally:
        done.set()
        sampler.join()
        seen[1] = max(seen[1], process.memory_info().rss)
