"""A real server on a real port, in a subprocess with its own XITUI_HOME; one that serves the scripted engine."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import pytest

#: What a server needs to run scripted models (backends/scripted.py): the switch, and the CPU, so that the
#: launch's memory estimate never probes a GPU library for an engine with no weights.
SCRIPTED_ENV = {"XITUI_SCRIPTED_ENGINE": "1", "XITUI_DEVICE": "cpu"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """`python -m xitui.server` in a subprocess with its own XITUI_HOME (a context manager: stopped on exit)."""

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
        try:
            self._wait_listening(connect_to)
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self, connect_to: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((connect_to, self.port), timeout=0.2):
                    return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"server exited: {(self.home / 'test-server.log').read_text()}") from None
                time.sleep(0.02)
        raise RuntimeError("server did not start")

    def wait_warm(self, seconds: float = 90) -> None:
        """Until the warm worker has imported its engines: a launch before then starts cold."""
        import httpx

        deadline = time.monotonic() + seconds
        while httpx.get(f"{self.url}/status", timeout=10).json()["warm_worker"]["state"] != "ready":
            assert time.monotonic() < deadline, "the warm worker never became ready"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def configured_server(tmp_path_factory: pytest.TempPathFactory, name: str, toml: str) -> ServerProcess:
    """A server whose home starts with `toml` as its config.toml."""
    home = tmp_path_factory.mktemp(name)
    (home / "config.toml").write_text(toml)
    return ServerProcess(home)


def scripted_server(home: Path, *, api_key: str | None = None, env: dict[str, str] | None = None,
                    args: tuple[str, ...] = ()) -> ServerProcess:
    """A server that runs scripted models (model_engine "scripted"): no weights, replies from a script."""
    return ServerProcess(home, api_key=api_key, env={**SCRIPTED_ENV, **(env or {})}, args=args)
