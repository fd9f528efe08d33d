"""The API key check (`server.api_key`): every route but the auth probe needs `Authorization: Bearer KEY`, or
`x-api-key: KEY` as Anthropic's SDK and Claude Code send it."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.responses import JSONResponse

from xitui.server.edge.error_body import error_body


class BearerAuth:
    """Plain ASGI middleware (streams pass through untouched): every route but the auth probe needs the key."""

    def __init__(self, app: Any, api_key: str | None):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.expected is None or scope["type"] != "http" or scope["path"] == "/v1/cluster/auth":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        given = headers.get(b"authorization", b"")
        if not given and b"x-api-key" in headers:
            given = b"Bearer " + headers[b"x-api-key"]
        if not secrets.compare_digest(given, self.expected):
            detail = "missing API key" if not given else "wrong API key"
            response = JSONResponse(error_body(f"{detail}: send 'Authorization: Bearer KEY' or 'x-api-key: KEY'",
                                             401), status_code=401)
            return await response(scope, receive, send)
        return await self.app(scope, receive, send)
