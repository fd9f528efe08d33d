"""`serve` (foreground) and `stop` (the background server)."""

from __future__ import annotations

from typing import Annotated

import typer

from xitui.terminal import output


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to bind (non-loopback needs --api-key).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="Port to listen on.")] = 9997,
    api_key: Annotated[str | None, typer.Option("--api-key", help="Demand 'Authorization: Bearer KEY'.")] = None,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn log level.")] = "info",
    allowed_hosts: Annotated[list[str] | None, typer.Option(
        "--allowed-hosts", help="Host names to serve besides loopback ones (comma-separated or repeated; * for any)."
    )] = None,
    allowed_origins: Annotated[list[str] | None, typer.Option(
        "--allowed-origins", help="Origins whose web pages may call the server, e.g. http://localhost:3000."
    )] = None,
    max_body_mib: Annotated[int | None, typer.Option(
        "--max-body-mib", min=1, help="Largest request body in MiB (default: config, 64)."
    )] = None,
) -> None:
    """Run the server in the foreground (Ctrl-C stops it and its models)."""
    from xitui.core.config import load_config, split_list
    from xitui.server.serve import serve as run

    settings = load_config()
    output.info(f"xitui server on http://{host}:{port} (Ctrl-C stops it)")
    run(host, port, api_key or settings.api_key, log_level,
        allowed_hosts=[h for raw in allowed_hosts or [] for h in split_list(raw)],
        allowed_origins=[o for raw in allowed_origins or [] for o in split_list(raw)],
        max_body_mib=max_body_mib, settings=settings)


def stop() -> None:
    """Stop the background server (and the models it runs)."""
    from xitui.client.autostart import stop_background_server

    pid = stop_background_server()
    output.info("no background server is running" if pid is None else f"stopped the server (pid {pid})")
