"""Start a background xitui server for a local endpoint that does not answer, and stop it again.

Two commands racing to start one take a file lock in XITUI_HOME, and the second finds the first's
server answering. The server writes `XITUI_HOME/server.json` (pid, host, port) and logs to
`XITUI_HOME/server.log`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from urllib.parse import urlsplit

from xitui.core.config import VIEW_YIELDED_ENV, home_dir, server_record
from xitui.core.errors import ServerUnavailableError, XituiError
from xitui.core.files import private_dir, private_file
from xitui.core.machine.python_command import python

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
START_TIMEOUT = 30.0


def local_address(base_url: str) -> tuple[str, int] | None:
    """(host, port) when the endpoint is on this machine over plain http, else None."""
    parts = urlsplit(base_url)
    if parts.scheme != "http" or parts.hostname not in LOOPBACK:
        return None
    return parts.hostname, parts.port or 80


def _answers(host: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def start_background_server(base_url: str, api_key: str | None = None) -> None:
    """Start `python -m xitui.server` detached for `base_url`; return once it accepts connections."""
    address = local_address(base_url)
    if address is None:
        raise ServerUnavailableError(f"no server answers at {base_url}", refused=True)
    host, port = address
    from filelock import FileLock

    home = private_dir(home_dir())
    with FileLock(str(home / "server.start.lock"), timeout=START_TIMEOUT):
        if _answers(host, port):
            return
        sys.stderr.write(f"starting a background xitui server on {host}:{port} (log: {home / 'server.log'})\n")
        if os.environ.get(VIEW_YIELDED_ENV):
            sys.stderr.write("note: started from a view that yields the CPU, the server and its models run at its "
                             "lower priority; `xitui stop`, then start it from a shell, for their full speed\n")
        env = dict(os.environ)
        if api_key:
            env["XITUI_SERVER_API_KEY"] = api_key
        with open(private_file(home / "server.log"), "ab") as log:
            proc = subprocess.Popen(
                python("-m", "xitui.server", "--host", host, "--port", str(port)),
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if _answers(host, port):
                return
            if proc.poll() is not None:
                why = _last_line(home / "server.log")
                raise ServerUnavailableError(f"the background server could not start: {why}")
            time.sleep(0.02)
        raise ServerUnavailableError(f"the background server did not answer within {START_TIMEOUT:.0f} s")


def _last_line(path: os.PathLike[str] | str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [line.strip() for line in fh if line.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "no output"


def stop_background_server(timeout: float = 10.0) -> int | None:
    """Stop the server recorded in XITUI_HOME/server.json; returns its pid, or None if none ran."""
    info_path = server_record(home_dir())
    try:
        info = json.loads(info_path.read_text())
        pid = int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not is_xitui_server(pid):
        # a stale file whose pid now belongs to another process: that one is not ours to signal
        info_path.unlink(missing_ok=True)
        return None
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        info_path.unlink(missing_ok=True)
        return None
    except PermissionError:
        raise XituiError(f"not allowed to stop the server with pid {pid}") from None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
    info_path.unlink(missing_ok=True)
    return pid


def is_xitui_server(pid: int) -> bool:
    """Whether `pid` runs a xitui server (`python -m xitui.server`, or `xitui serve`) of this user."""
    import psutil

    try:
        process = psutil.Process(pid)
        command = process.cmdline()
        if hasattr(os, "getuid") and process.uids().real != os.getuid():
            return False
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    # `python -P -m xitui.server` (the background server; before Python 3.11, `-c` running that module), or
    # `xitui serve` / `python -m xitui serve`
    return "xitui.server" in command or any("run_module('xitui.server'" in arg for arg in command) or \
        ("serve" in command and any(os.path.basename(arg) in ("xitui", "xitui.exe") for arg in command))


def check_listener(base_url: str) -> None:
    """Before a command sends anything to a local endpoint: whoever listens there must be this user (or
    root). Another user's process on the port would read every prompt, and answer what it likes."""
    address = local_address(base_url)
    if address is None or not hasattr(os, "getuid"):
        return
    from xitui.core.machine import peers
    uid = peers.listener_uid(address[1], address[0] if address[0] != "localhost" else "127.0.0.1")
    if uid is not None and uid not in (os.getuid(), 0):
        raise ServerUnavailableError(
            f"port {address[1]} on {address[0]} is held by another user's process ({peers.user_name(uid)}): "
            "nothing was sent to it; choose another port with -e http://127.0.0.1:PORT or XITUI_ENDPOINT")


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for a parent that never reaps it counts as gone)."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
