"""Per-connection checks, before any request of a connection runs: who is on the other end, how large its
request head may grow, and how long it may take to send one.

uvicorn's httptools protocol, with three additions:

- **Other users.** On loopback, a TCP connection says nothing of who made it, and a server without a key
  answers anyone on the machine (as Ollama's and Xinference's do). On Linux the kernel knows the owner of
  the client's socket (xitui/core/machine/peers.py); a connection from another user is answered 403 on every
  request, naming the setting that opens it (`server.allow_other_users`). Asked once per connection, when
  it is made, not per request. With an API key set, the key decides instead (anyone who has it may use it).
  The check fails closed: a connection whose owner the kernel cannot tell (the client reset or closed its
  socket before the server asked, which a second user can do at will) is refused the same way, and uid 0
  counts as root only from a live socket (a TIME_WAIT entry reports 0 too).
- **Header size.** uvicorn's httptools path has no limit on a request's head; past `MAX_HEAD` bytes the
  connection gets 431 and is closed.
- **Header time.** A connection that sends no complete request head within `HEAD_TIMEOUT` seconds (one
  that never sends anything, or trickles bytes) is closed; uvicorn's keep-alive timeout only starts after
  a response.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from xitui.core.machine import peers
from xitui.server.edge.error_body import error_body

#: Largest request line plus headers (nginx's default buffers hold 32 KiB; browsers send a few KiB).
MAX_HEAD = 64 * 1024
#: Seconds a connection has to send a whole request head (XITUI_HEAD_TIMEOUT overrides).
HEAD_TIMEOUT = float(os.environ.get("XITUI_HEAD_TIMEOUT") or 20.0)


_LET_IN = ("to serve other users, start it with `xitui config set server.allow_other_users true`, or set an "
           "API key (`xitui config set api_key KEY`) and send it")


def refusal_app(uid: int | None) -> Any:
    """The ASGI app a connection from another user, or from an owner the kernel cannot tell (None), gets:
    403 with the way to be let in."""
    ours = peers.user_name(os.geteuid())
    if uid is None:
        detail = (f"this server serves only its own user ({ours}), and the owner of this connection could not "
                  f"be found (its socket was closed or reset before the server could ask who made it): {_LET_IN}")
    else:
        detail = (f"this server serves only its own user ({ours}), and this connection comes from "
                  f"{peers.user_name(uid)}: {_LET_IN}")
    body = orjson.dumps(error_body(detail, 403))

    async def refuse(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 403, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        ]})
        await send({"type": "http.response.body", "body": body})

    return refuse


def protocol_class(allow_other_users: bool, api_key: str | None) -> type[HttpToolsProtocol]:
    """uvicorn's `http` protocol class with this server's per-connection checks."""
    check_owner = not allow_other_users and not api_key and peers.supported()
    owner = os.geteuid() if hasattr(os, "geteuid") else None
    refuse_unknown = refusal_app(None)

    class GuardedProtocol(HttpToolsProtocol):
        _awaiting_head = True
        _head_bytes = 0
        _head_timer: asyncio.TimerHandle | None = None

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._arm_head_timer()
            if not check_owner:
                return
            if not self.client or not self.server:
                # the socket was reset before it was accepted: getpeername() fails, and no owner can be asked
                self.app = refuse_unknown
            elif peers.is_loopback(self.client[0]):
                uid = peers.peer_uid(self.client, (self.server[0], int(self.server[1] or 0)))
                # root may read the server's files and its memory anyway: refusing it protects nothing
                # (peer_uid gives 0 only for a live socket of root's; None when the kernel cannot tell)
                if uid is None:
                    self.app = refuse_unknown
                elif uid not in (owner, 0):
                    self.app = refusal_app(uid)

        def _arm_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._head_timed_out)

        def _head_timed_out(self) -> None:
            self._head_timer = None
            if self._awaiting_head and not self.transport.is_closing():
                self.transport.close()

        def data_received(self, data: bytes) -> None:
            if self._awaiting_head:
                self._head_bytes += len(data)
                self._arm_head_timer()
            super().data_received(data)
            if self._awaiting_head and self._head_bytes > MAX_HEAD and not self.transport.is_closing():
                self._too_large()

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._awaiting_head = True
            self._arm_head_timer()

        def on_headers_complete(self) -> None:
            self._awaiting_head = False
            self._head_bytes = 0
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().on_headers_complete()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None
            super().connection_lost(exc)

        def _too_large(self) -> None:
            body = orjson.dumps(error_body(f"request head (request line and headers) larger than "
                                           f"{MAX_HEAD // 1024} KiB", 431))
            self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json"
                                 b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n"
                                 + body)
            self.transport.close()

    return GuardedProtocol
