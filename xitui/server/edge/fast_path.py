"""The inference routes served straight from the ASGI call, and the form every error of the API takes."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from xitui.core.errors import XituiError
from xitui.server.edge.error_body import error_body

log = logging.getLogger("xitui.server")

#: Who sent the request being served (host:port), set where a request enters the server (here),
#: read when a request is sent to a worker, so that a crash can name who sent what was in flight.
CLIENT: ContextVar[str | None] = ContextVar("xitui_client", default=None)


class FastPath:
    """Serves the inference POST routes straight from the ASGI call, past Starlette's middleware stack and
    router: at a few hundred embedding requests a second, that machinery cost more server CPU than the
    request itself, CPU the model needs. The handlers are the same functions the FastAPI routes run (those
    stay, for the OpenAPI document); errors take the same form."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.routes: dict[str, Any] = app.state.fast_routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":  # who sent it, should it be in a worker's hands when that worker dies
            peer = scope.get("client")
            CLIENT.set(f"{peer[0]}:{peer[1]}" if peer else None)
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            return await self.app(scope, receive, send)
        try:
            response = await handler(Request(scope, receive))
        except Exception as exc:
            response = error_response(exc, scope["path"])
        await response(scope, receive, send)


def error_response(exc: Exception, path: str) -> JSONResponse:
    """An error as the API answers it: the user's errors with their status, anything else a plain 500."""
    if isinstance(exc, XituiError):
        return JSONResponse(error_body(str(exc), exc.status_code), status_code=exc.status_code)
    log.exception("internal error on %s", path)
    return JSONResponse(error_body(f"internal error: {type(exc).__name__}: {exc}", 500), status_code=500)
