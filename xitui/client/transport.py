"""`Transport`: the HTTP under the client and its model handles — one httpx connection pool, the autostart
of a local server, errors turned into `ClientError` / `ServerUnavailableError`, server-sent events."""

from __future__ import annotations

import json
import re
import sys
import types
from collections.abc import Iterator
from typing import Any

if "httpx" not in sys.modules:
    # httpx imports its own command-line tool (click, rich, pygments) at import time, about 40 ms of every
    # xitui command's start; we never use it, so give httpx an empty stand-in for that one module.
    _stub = types.ModuleType("httpx._main")
    _stub.main = lambda *args, **kwargs: None  # type: ignore[attr-defined]
    sys.modules["httpx._main"] = _stub
import httpx  # noqa: E402

from xitui.core.errors import ServerUnavailableError, XituiError  # noqa: E402

#: Generation and launches can run for minutes; connecting must not.
TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=60.0, pool=None)
#: Everything else (listings, descriptions, progress) answers within this or is reported as not answering.
QUERY_TIMEOUT = httpx.Timeout(connect=5.0, read=60.0, write=60.0, pool=None)


class ClientError(XituiError, RuntimeError):
    """The server refused or failed a request; the message is the server's `detail`."""

    def __init__(self, message: str, status_code: int = 400):
        super().__init__(message)
        self.status_code = status_code


#: Xinference puts the answering actor in front of its messages: `[address=127.0.0.1:19999, pid=15063] `.
ACTOR_PREFIX = re.compile(r"^\s*\[address=[^\]]*\]\s*")


class Transport:
    """Requests to one server. With `autostart`, a local endpoint that does not answer gets a background
    xitui server started for it, once."""

    def __init__(self, base_url: str, api_key: str | None = None, *, autostart: bool = False,
                 timeout: httpx.Timeout | float | None = None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.autostart = autostart
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Plain http needs no certificates: skipping them saves ~20 ms of start-up per command.
        verify = not self.base_url.startswith("http://")
        self.http = httpx.Client(base_url=self.base_url, headers=headers, verify=verify,
                                 timeout=TIMEOUT if timeout is None else timeout, trust_env=False)
        self.query_timeout = QUERY_TIMEOUT if timeout is None else timeout
        self._listener_checked = False

    def close(self) -> None:
        self.http.close()

    def send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self.autostart and not self._listener_checked:
            # a local endpoint the CLI would start a server for: never send prompts to another user's port
            from xitui.client.autostart import check_listener

            check_listener(self.base_url)
            self._listener_checked = True
        try:
            return self.http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if not self.autostart:
                raise self.unavailable(exc) from None
        except httpx.TransportError as exc:
            raise self.unavailable(exc) from None
        from xitui.client.autostart import check_listener, start_background_server

        start_background_server(self.base_url, self.api_key)
        self.autostart = False
        check_listener(self.base_url)
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self.unavailable(exc) from None

    def unavailable(self, exc: Exception) -> ServerUnavailableError:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ServerUnavailableError(f"the server at {self.base_url} did not answer in time")
        reason = str(exc) or type(exc).__name__
        return ServerUnavailableError(f"no server answers at {self.base_url} ({reason})", refused=True)

    @staticmethod
    def check(response: httpx.Response) -> httpx.Response:
        if response.status_code != 200:
            raise ClientError(detail(response), response.status_code)
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.check(self.send("GET", path, params=params or None, timeout=self.query_timeout)).json()

    def post_json(self, path: str, body: Any, **params: Any) -> Any:
        return self.check(self.send("POST", path, json=body, params=params or None)).json()

    def delete(self, path: str) -> Any:
        return self.check(self.send("DELETE", path)).json()

    def inference(self, path: str, body: dict[str, Any]) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """One answer, or its chunks when the body asks for a stream."""
        if body.get("stream"):
            return self.stream(path, body)
        return self.post_json(path, body)

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Server-sent events to chunks; the request is sent before the first chunk is asked for."""
        request = self.http.build_request("POST", path, json=body)
        try:
            response = self.http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self.unavailable(exc) from None
        if response.status_code != 200:
            response.read()
            response.close()
            raise ClientError(detail(response), response.status_code)
        return _events(response)


def detail(response: httpx.Response) -> str:
    """The one line a refusal says (FastAPI's `detail`, Xinference's actor prefix dropped)."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    found = data.get("detail") if isinstance(data, dict) else None
    if isinstance(found, list):  # FastAPI validation errors from other servers
        text = "; ".join(_problem(d) for d in found)
    else:
        text = str(found) if found is not None else str(data)[:300]
    return " ".join(ACTOR_PREFIX.sub("", text).split())[:500]


def _problem(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body",))
    return f"{where}: {item.get('msg', item)}" if where else str(item.get("msg", item))


def _events(response: httpx.Response) -> Iterator[dict[str, Any]]:
    try:
        for line in response.iter_lines():
            if not line.startswith("data:"):
                continue
            data = line[5:].strip()
            if data == "[DONE]":
                return
            chunk = json.loads(data)
            if isinstance(chunk, dict) and "error" in chunk:
                raise ClientError(stream_error(chunk), 500)
            yield chunk
    except httpx.TransportError:
        raise ClientError("the server closed the stream early", 500) from None
    finally:
        response.close()


def stream_error(chunk: dict[str, Any]) -> str:
    """The line a mid-stream error event says: xitui's `detail`, OpenAI's `error.message`, or Xinference's
    `error` string."""
    error = chunk.get("error")
    if isinstance(chunk.get("detail"), str):
        return chunk["detail"]
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return error["message"]
    return str(error)
