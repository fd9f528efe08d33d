"""Run the server in the foreground until interrupted: what `xitui serve` and `python -m xitui.server` do."""

from __future__ import annotations

import json
import os
import signal

from xitui.core.config import home_dir, load_config, server_record
from xitui.core.errors import XituiError
from xitui.core.files import atomic_write, private_dir


def serve(host: str, port: int, api_key: str | None, log_level: str = "warning", *,
          allowed_hosts: list[str] | None = None, allowed_origins: list[str] | None = None,
          max_body_mib: int | None = None) -> None:
    """Serve until interrupted; the pid file says who serves where while it runs.

    Hosts and origins given here add to the config's (`server.allowed_hosts`, `server.allowed_origins`)."""
    from xitui.core.config import DEFAULT_MAX_LOADING, DEFAULT_MAX_RESTARTS, check_origin, warm_engines
    from xitui.server.guard import Policy, is_loopback

    if not is_loopback(host.strip("[]")) and not api_key:
        raise XituiError(
            f"refusing to serve on {host} without an API key: anyone who can reach it could run models; "
            "pass --api-key KEY (or `xitui config set api_key KEY`), or bind 127.0.0.1"
        )
    import uvicorn

    from xitui.core.units import parse_duration
    from xitui.server.app import create_asgi
    from xitui.server.connection import protocol_class

    settings = load_config().server
    try:
        default_ttl = parse_duration(settings.get("ttl", "never"))
    except ValueError as exc:
        raise XituiError(f"server.ttl in the config: {exc}") from None
    try:
        warm = warm_engines(settings.get("warm", ["all"]))
    except XituiError as exc:
        raise XituiError(f"{exc} (in the config or XITUI_WARM)") from None
    _log_to_stderr(log_level)
    origins = [check_origin(o) for o in [*settings["allowed_origins"], *(allowed_origins or [])]]
    policy = Policy.for_bind(host, [*settings["allowed_hosts"], *(allowed_hosts or [])], origins,
                             max_body_mib or settings["max_body_mib"])
    # Everything the server and its workers write (logs, registrations, launches, downloads) is the user's
    # alone, whatever the umask it was started with.
    os.umask(0o077)
    home = private_dir(home_dir())
    app = create_asgi(home, api_key=api_key, policy=policy, default_ttl=default_ttl,
                      default_parallel=int(settings.get("n_parallel") or 0) or None, warm_engines=warm,
                      allowed_envs=settings.get("allowed_envs") or [], autoload=bool(settings.get("autoload", True)),
                      max_loaded=int(settings.get("max_loaded") or 0),
                      max_loading=max(0, int(settings.get("max_loading", DEFAULT_MAX_LOADING))),
                      max_restarts=max(0, int(settings.get("max_restarts", DEFAULT_MAX_RESTARTS))))
    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                            timeout_graceful_shutdown=3,
                            http=protocol_class(bool(settings.get("allow_other_users")), api_key))
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
