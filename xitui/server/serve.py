"""Run the server in the foreground until interrupted: what `xitui serve` and `python -m xitui.server` do."""

from __future__ import annotations

import json
import os
import signal

from xitui.core.config import Settings, home_dir, load_config, server_record
from xitui.core.errors import XituiError
from xitui.core.files import atomic_write, private_dir


def serve(host: str, port: int, api_key: str | None, log_level: str = "warning", *,
          allowed_hosts: list[str] | None = None, allowed_origins: list[str] | None = None,
          max_body_mib: int | None = None, settings: Settings | None = None) -> None:
    """Serve until interrupted; the pid file says who serves where while it runs.

    `settings`: the user's (read here when not given); their [server] table is what the app runs by. Hosts and
    origins given here add to its `allowed_hosts` and `allowed_origins`; `max_body_mib` replaces its own."""
    from xitui.core.config import check_origin
    from xitui.server.edge.guard import Policy, is_loopback

    if not is_loopback(host.strip("[]")) and not api_key:
        raise XituiError(
            f"refusing to serve on {host} without an API key: anyone who can reach it could run models; "
            "pass --api-key KEY (or `xitui config set api_key KEY`), or bind 127.0.0.1"
        )
    import uvicorn

    from xitui.server.api.routes import create_asgi
    from xitui.server.edge.connection import protocol_class

    server_settings = (settings or load_config()).server
    _log_to_stderr(log_level)
    origins = [check_origin(o) for o in [*server_settings.allowed_origins, *(allowed_origins or [])]]
    policy = Policy.for_bind(host, [*server_settings.allowed_hosts, *(allowed_hosts or [])], origins,
                             max_body_mib or server_settings.max_body_mib)
    # Everything the server and its workers write (logs, registrations, launches, downloads) is the user's
    # alone, whatever the umask it was started with.
    os.umask(0o077)
    home = private_dir(home_dir())
    app = create_asgi(home, api_key=api_key, policy=policy, settings=server_settings)
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=3,
                            http=protocol_class(server_settings.allow_other_users, api_key))
    server = uvicorn.Server(config)
    info = server_record(home)
    try:
        import socket

        # Bind first, so a port in use is one clear line and the pid file is written only once we serve.
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise XituiError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        atomic_write(info, json.dumps({"pid": os.getpid(), "host": host, "port": port}).encode())
        # uvicorn shuts down on SIGTERM, then raises the signal again with the handler found at start:
        # make that an exit that runs `finally`, so the pid file goes away.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        server.run(sockets=[sock])
    finally:
        try:
            if json.loads(info.read_text()).get("pid") == os.getpid():
                info.unlink()
        except (OSError, ValueError):
            pass


def _log_to_stderr(level: str) -> None:
    """xitui's own log lines (models unloaded, restored, failed) go where uvicorn's go, with a time."""
    import logging

    logger = logging.getLogger("xitui")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s xitui: %(message)s", "%Y-%m-%d %H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.DEBUG if level.lower() == "debug" else logging.INFO)


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(0)
