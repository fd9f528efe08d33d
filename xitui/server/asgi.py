"""The ASGI layers in front of the FastAPI app: the API key check and the inference fast path."""

from __future__ import annotations

import logging
import secrets
from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse

from xitui.core.errors import XituiError
from xitui.server.restarts import CLIENT

log = logging.getLogger("xitui.server")


class BearerAuth:
    """Plain ASGI middleware (streams pass through untouched): every route but the auth probe needs the key."""

    def __init__(self, app: Any, api_key: str | None):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.expected is None or scope["type"] != "http" or scope["path"] == "/v1/cluster/auth":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not secrets.compare_digest(given, self.expected):
            detail = "missing API key" if not given else "wrong API key"
            response = JSONResponse({"detail": f"{detail}: send 'Authorization: Bearer KEY'"}, status_code=401)
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)


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
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)
    log.exception("internal error on %s", path)
    return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)
