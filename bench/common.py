"""What the benchmarks share: a real xitui server in a temporary XITUI_HOME, and medians."""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the benchmarks reuse the test suite's model builders


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`python -m xitui.server` on a free port with a fresh XITUI_HOME."""

    def __init__(self, config: str = "") -> None:
        """`config`: the server's config.toml text (its settings, e.g. "[server]\nallow_other_users = true")."""
        self.home = Path(tempfile.mkdtemp(prefix="xitui-bench-"))
        os.environ["XITUI_HOME"] = str(self.home)
        os.environ["XITUI_CONFIG"] = str(self.home / "config.toml")
        (self.home / "config.toml").write_text(config)
        os.environ.setdefault("XITUI_CACHE", str(Path.home() / ".cache" / "xitui-test"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, "-m", "xitui.server", "--port", str(self.port)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the xitui server did not start: run `python -m xitui.server` to see why") from None
                time.sleep(0.02)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def median(values: list[float]) -> float:
    return statistics.median(values)
