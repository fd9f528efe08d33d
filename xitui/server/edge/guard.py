"""The outermost ASGI layer: who may talk to the server at all, whatever the route.

A server on 127.0.0.1 without a key keeps other machines out, but not the web pages in the user's own
browser. Four checks close that, before the API key check and before any route (the inference fast path
included):

- Host: a DNS-rebinding page reaches 127.0.0.1 under its own name; only loopback names (and hosts the user
  allows) are served. An empty host and look-alike suffixes (`.local`, `.internal`) are not loopback: both
  were bypasses of Ollama's check (CVE-2024-28224 and after).
- Origin: a cross-site page's requests carry its Origin; unless the user allowed that origin, they are
  refused (not merely left without CORS headers: a "simple" request would still run the model). Allowed
  origins get CORS answers from Starlette's CORSMiddleware, preflight included.
- Content-Type: requests with a body must say `application/json`, so no form or `text/plain` post from a
  page slips through as a "simple" request.
- Size: a body larger than the limit is refused with 413 before it is read whole.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from starlette.middleware.cors import CORSMiddleware

from xitui.core.config import DEFAULT_MAX_BODY_MIB
from xitui.server.edge.error_body import error_body

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARD_BINDS = frozenset({"0.0.0.0", "::", ""})
#: Methods whose bodies are checked: POST is the one a web page can send cross-site without a preflight,
#: and the only one the API takes a body with (PUT and PATCH get 405 from the router).
_BODY_METHODS = frozenset({"POST"})

Scope = dict[str, Any]


@dataclass(frozen=True)
class Policy:
    """What the guard lets through: hosts (names without port, or `host:port`), origins, body size."""

    hosts: frozenset[str]
    origins: frozenset[str] = frozenset()
    max_body: int = DEFAULT_MAX_BODY_MIB * 1024 * 1024
    any_host: bool = False
    any_origin: bool = False
    #: Told in the refusal, so a user knows what to change.
    how_to_allow: dict[str, str] = field(default_factory=dict)

    @classmethod
    def for_bind(cls, bind_host: str, allowed_hosts: Iterable[str] = (), allowed_origins: Iterable[str] = (),
                 max_body_mib: int = DEFAULT_MAX_BODY_MIB) -> Policy:
        """The policy of a server bound to `bind_host`: loopback names on a loopback bind; on another
        address that address too (every address of this machine for a wildcard bind); plus what is allowed."""
        hosts = {h.strip().lower().strip("[]") for h in allowed_hosts if h.strip()}
        origins = {o.strip().rstrip("/").lower() for o in allowed_origins if o.strip()}
        bind = bind_host.strip("[]").lower()
        if bind in WILDCARD_BINDS:
            hosts |= LOOPBACK_HOSTS | machine_addresses()
        else:
            hosts.add(bind)
            if is_loopback(bind):
                hosts |= LOOPBACK_HOSTS
        return cls(frozenset(hosts - {"*"}), frozenset(origins - {"*"}), max_body_mib * 1024 * 1024,
                   any_host="*" in hosts, any_origin="*" in origins)


def is_loopback(host: str) -> bool:
    """True for the loopback names and addresses (127.0.0.0/8, ::1), nothing that merely looks local."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def machine_addresses() -> set[str]:
    """This machine's own addresses and name: what clients reach a wildcard bind by."""
    import psutil

    found = {socket.gethostname().lower()}
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family in (socket.AF_INET, socket.AF_INET6):
                found.add(addr.address.split("%")[0].lower())
    return found


def split_host(header: str) -> tuple[str, str] | None:
    """`name:port`, `[v6]:port` or `name` as (host, port); None when malformed or the host is empty."""
    header = header.strip().lower()
    if header.startswith("["):
        end = header.find("]")
        if end < 0:
            return None
        host, rest = header[1:end], header[end + 1:]
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return None
        port = rest[1:]
    else:
        host, sep, port = header.rpartition(":")
        if not sep:
            host, port = header, ""
        elif not port.isdigit() or ":" in host:
            return None
    if not host:
        return None
    return host, port


class RequestGuard:
    """Host, Origin, Content-Type and size checks, then CORS for allowed origins (see the module doc)."""

    def __init__(self, app: Any, policy: Policy, takes_body: Callable[[str], bool] | None = None):
        self.app = app
        self.policy = policy
        #: Whether a POST to this path reaches a route (others get 405 from the router, bodies unread).
        self.takes_body = takes_body or (lambda path: True)
        self.cors = CORSMiddleware(
            app,
            allow_origins=["*"] if policy.any_origin else sorted(policy.origins),
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "x-api-key", "anthropic-version", "anthropic-beta"],
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name in headers:  # a second Host or Origin is refused below; others keep the first
                headers[name] = b"\x00"
            else:
                headers[name] = value
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            return await _answer(send, *refusal)
        origin = headers.get(b"origin")
        target = self.cors if origin is not None else self.app
        if self._checks_body(scope):
            await self._limited(target, scope, receive, send, headers)
        else:
            await target(scope, receive, send)

    def _checks_body(self, scope: Scope) -> bool:
        return scope["method"] in _BODY_METHODS and self.takes_body(scope["path"])

    def _refusal(self, scope: Scope, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
        policy = self.policy
        raw_host = headers.get(b"host")
        if raw_host is None:
            return 403, "missing Host header: send the host you reach this server by"
        parsed = split_host(raw_host.decode("latin-1"))
        if parsed is None:
            return 403, f"malformed Host header {raw_host.decode('latin-1')!r}"
        host, port = parsed
        if not (policy.any_host or host in policy.hosts or f"{host}:{port}" in policy.hosts):
            shown = f"[{host}]" if ":" in host else host
            return 403, (f"host {shown!r} is not allowed (DNS rebinding protection): to serve it, start the server "
                         f"with --allowed-hosts {shown}, or set XITUI_ALLOWED_HOSTS or "
                         f"`xitui config set server.allowed_hosts {shown}`")
        origin = headers.get(b"origin")
        if origin is not None and not self._origin_allowed(origin.decode("latin-1"), raw_host.decode("latin-1"),
                                                           scope):
            shown = origin.decode("latin-1")
            return 403, (f"origin {shown!r} is not allowed: web pages may use this server only from allowed "
                         f"origins; allow one with --allowed-origins {shown}, XITUI_ALLOWED_ORIGINS or "
                         f"`xitui config set server.allowed_origins {shown}`")
        if self._checks_body(scope):
            kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if kind != b"application/json":
                shown = kind.decode("latin-1") or "none"
                return 415, f"request bodies must be JSON: send 'Content-Type: application/json' (got {shown})"
            length = headers.get(b"content-length")
            if length is not None:
                if not length.isdigit():
                    return 400, "malformed Content-Length header"
                if int(length) > policy.max_body:
                    return 413, self._too_large()
        return None

    def _origin_allowed(self, origin: str, host: str, scope: Scope) -> bool:
        origin = origin.strip().rstrip("/").lower()
        if self.policy.any_origin or origin in self.policy.origins:
            return True
        # Same origin (the API docs page served by this server): the Host already passed its check.
        scheme = scope.get("scheme", "http")
        return origin == f"{scheme}://{host.strip().lower()}"

    def _too_large(self) -> str:
        mib = self.policy.max_body // (1024 * 1024)
        return (f"request body larger than {mib} MiB: send less per request, or raise the limit with "
                f"`xitui config set server.max_body_mib N`")

    async def _limited(self, target: Any, scope: Scope, receive: Any, send: Any,
                       headers: dict[bytes, bytes]) -> None:
        """Pass a request with a body on; one without Content-Length (chunked) is read here first, up to the
        limit, so an endless body is refused after `max_body` bytes, not after filling memory."""
        if b"content-length" in headers:
            return await target(scope, receive, send)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.policy.max_body:
                return await _answer(send, 413, self._too_large())
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await target(scope, replay, send)


async def _answer(send: Any, status: int, detail: str) -> None:
    body = orjson.dumps(error_body(detail, status))
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})
