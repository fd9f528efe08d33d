"""`Client`: Xinference's RESTful client calls over httpx, against xitui's server or Xinference's."""

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

from xitui.client.handles import ChatModelHandle, EmbeddingModelHandle, GenerateModelHandle, ModelHandle
from xitui.core.errors import ServerUnavailableError, XituiError

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
_ACTOR_PREFIX = re.compile(r"^\s*\[address=[^\]]*\]\s*")


def _detail(response: httpx.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return response.text.strip()[:300] or response.reason_phrase
    detail = data.get("detail") if isinstance(data, dict) else None
    if isinstance(detail, list):  # FastAPI validation errors from other servers
        text = "; ".join(_problem(d) for d in detail)
    else:
        text = str(detail) if detail is not None else str(data)[:300]
    return " ".join(_ACTOR_PREFIX.sub("", text).split())[:500]


def _problem(item: Any) -> str:
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(p) for p in item.get("loc", ()) if p not in ("body",))
    return f"{where}: {item.get('msg', item)}" if where else str(item.get("msg", item))


class Client:
    """Talk to a server at `base_url`. With `autostart`, a local endpoint that does not answer gets a
    background xitui server started for it (the CLI does this; plain Python use does not)."""

    def __init__(self, base_url: str = "http://127.0.0.1:9997", api_key: str | None = None, *,
                 autostart: bool = False, timeout: httpx.Timeout | float | None = None):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.autostart = autostart
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # Plain http needs no certificates: skipping them saves ~20 ms of start-up per command.
        verify = not self.base_url.startswith("http://")
        self._http = httpx.Client(base_url=self.base_url, headers=headers, verify=verify,
                                  timeout=TIMEOUT if timeout is None else timeout, trust_env=False)
        self._kind: str | None = None
        self._listener_checked = False
        self._query_timeout = QUERY_TIMEOUT if timeout is None else timeout

    # --- which server -----------------------------------------------------------------------------

    def server_kind(self) -> str:
        """"xitui" or "xinference", from what the server says of itself (`/v1/cluster/version`), never from
        its port; read once per client."""
        if self._kind is None:
            try:
                version = self._get("/v1/cluster/version")
            except ClientError:
                version = {}
            self._kind = "xitui" if isinstance(version, dict) and version.get("server") == "xitui" else "xinference"
        return self._kind

    @property
    def is_xinference(self) -> bool:
        return self.server_kind() == "xinference"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport ------------------------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        if self.autostart and not self._listener_checked:
            # a local endpoint the CLI would start a server for: never send prompts to another user's port
            from xitui.client.autostart import check_listener

            check_listener(self.base_url)
            self._listener_checked = True
        try:
            return self._http.request(method, path, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if not self.autostart:
                raise self._unavailable(exc) from None
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from None
        from xitui.client.autostart import check_listener, start_background_server

        start_background_server(self.base_url, self.api_key)
        self.autostart = False
        check_listener(self.base_url)
        try:
            return self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from None

    def _unavailable(self, exc: Exception) -> ServerUnavailableError:
        if isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
            return ServerUnavailableError(f"the server at {self.base_url} did not answer in time")
        reason = str(exc) or type(exc).__name__
        return ServerUnavailableError(f"no server answers at {self.base_url} ({reason})")

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.status_code != 200:
            raise ClientError(_detail(response), response.status_code)
        return response

    def _get(self, path: str, **params: Any) -> Any:
        return self._check(self._send("GET", path, params=params or None, timeout=self._query_timeout)).json()

    def _post_json(self, path: str, body: Any, **params: Any) -> Any:
        return self._check(self._send("POST", path, json=body, params=params or None)).json()

    def _delete(self, path: str) -> Any:
        return self._check(self._send("DELETE", path)).json()

    def _inference(self, path: str, body: dict[str, Any]) -> dict[str, Any] | Iterator[dict[str, Any]]:
        if body.get("stream"):
            return self._stream(path, body)
        return self._post_json(path, body)

    def _stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Server-sent events to chunks; the request is sent before the first chunk is asked for."""
        request = self._http.build_request("POST", path, json=body)
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            raise self._unavailable(exc) from None
        if response.status_code != 200:
            response.read()
            response.close()
            raise ClientError(_detail(response), response.status_code)
        return _events(response)

    # --- registrations --------------------------------------------------------------------------

    def register_model(self, model_type: str, model: str, persist: bool = False, worker_ip: str | None = None) -> None:
        """Register a spec (JSON text). Xinference 4 takes only the version 2 form: a documented version 1 or
        flat spec is checked here with xitui's rules and sent normalised (see `xinference_spec`)."""
        if self.is_xinference:
            model = xinference_spec(model_type, model)
        self._post_json(f"/v1/model_registrations/{model_type}",
                        {"model": model, "persist": persist, "worker_ip": worker_ip})

    def unregister_model(self, model_type: str, model_name: str) -> None:
        self._delete(f"/v1/model_registrations/{model_type}/{model_name}")

    def list_model_registrations(self, model_type: str, detailed: bool = False) -> list[dict[str, Any]]:
        return self._get(f"/v1/model_registrations/{model_type}", detailed=str(detailed).lower())

    def get_model_registration(self, model_type: str, model_name: str) -> dict[str, Any]:
        return self._get(f"/v1/model_registrations/{model_type}/{model_name}")

    # --- running models -------------------------------------------------------------------------

    def launch_model(
        self,
        model_name: str,
        model_type: str = "LLM",
        model_engine: str | None = None,
        model_uid: str | None = None,
        model_size_in_billions: int | str | float | None = None,
        model_format: str | None = None,
        quantization: str | None = None,
        replica: int = 1,
        n_gpu: int | str | None = "auto",
        wait_ready: bool = True,
        **kwargs: Any,
    ) -> str:
        """Launch a registered model; returns its uid (the model name unless `model_uid` is given).

        Xinference needs `model_engine`: when it is not given, the server is asked which engine fits."""
        if model_engine is None and self.is_xinference:
            model_engine = self.engine_for(model_name, model_type, model_format, quantization)
            if model_engine is None:
                raise ClientError(f"{model_name}: the server names no engine that can run it "
                                  f"(format {model_format or 'any'}); pass model_engine")
        if model_uid is None and self.is_xinference:
            model_uid = model_name  # Xinference would pick a random suffix; xitui's default is the name
        body = {
            "model_uid": model_uid, "model_name": model_name, "model_type": model_type,
            "model_engine": model_engine, "model_format": model_format,
            "model_size_in_billions": model_size_in_billions, "quantization": quantization,
            "replica": replica, "n_gpu": n_gpu, **kwargs,
        }
        return self._post_json("/v1/models", body, wait_ready=str(wait_ready).lower())["model_uid"]

    def estimate_launch(self, model_name: str, model_type: str = "LLM", **launch: Any) -> dict[str, Any]:
        """The memory a launch would need and whether it fits now (xitui's server only): {"estimate",
        "fits", "free_ram", "free_gpu", "largest_context", "line"}; "estimate" is None when the files are
        not on the server's machine yet."""
        if self.is_xinference:
            raise ClientError(f"the server at {self.base_url} is Xinference, which does not estimate launches")
        body = {"model_name": model_name, "model_type": model_type,
                **{k: v for k, v in launch.items() if v is not None}}
        return self._post_json("/v1/estimate", body)

    def launch_status(self, model_uid: str) -> dict[str, Any]:
        """Where a launch stands, the same on both servers: {"state": launching|ready|error, "progress",
        "stage", "error"}. xitui says so in `/progress`; Xinference in its instance list (`status`
        CREATING / READY / ERROR per replica), with progress and stage from `/progress`."""
        progress = self.get_launch_model_progress(model_uid)
        if "state" in progress:
            return progress
        instances = self._get("/v1/models/instances", model_uid=model_uid)
        status = str((instances[0] if instances else {}).get("status") or "CREATING").upper()
        replicas = (instances[0] if instances else {}).get("replica_statuses") or []
        errors = [r.get("error_message") for r in replicas if r.get("error_message")]
        state = {"READY": "ready", "ERROR": "error"}.get(status, "error" if errors else "launching")
        return {"state": state, "progress": 1.0 if state == "ready" else progress.get("progress", 0.0),
                "stage": progress.get("stage") or status.lower(),
                "error": "; ".join(_ACTOR_PREFIX.sub("", e) for e in errors) or None}

    def engine_for(self, model_name: str, model_type: str, model_format: str | None,
                   quantization: str | None) -> str | None:
        """The engine an Xinference server would run this registration on (`/v1/engines/{name}`): the first
        that lists a matching format and quantization. None when it names none."""
        engines = self._get(f"/v1/engines/{model_name}", model_type=model_type)
        if engines is None:
            raise ClientError(f"{model_type} model {model_name!r} is not registered on the server", 404)
        for engine, specs in engines.items() if isinstance(engines, dict) else []:
            for spec in specs if isinstance(specs, list) else []:
                if model_format and spec.get("model_format") not in (None, model_format):
                    continue
                quants = spec.get("quantizations") or []
                if quantization and quants and quantization not in quants:
                    continue
                return engine
        return None

    def list_models(self) -> dict[str, dict[str, Any]]:
        data = self._get("/v1/models")
        items = data.get("data", []) if isinstance(data, dict) else data
        return {item["id"]: item for item in items}

    def describe_model(self, model_uid: str) -> dict[str, Any]:
        return self._get(f"/v1/models/{model_uid}")

    def get_launch_model_progress(self, model_uid: str) -> dict[str, Any]:
        return self._get(f"/v1/models/{model_uid}/progress")

    def get_model(self, model_uid: str) -> ModelHandle:
        desc = self.describe_model(model_uid)
        if desc.get("model_type", "LLM") == "embedding":
            return EmbeddingModelHandle(self, model_uid, desc)
        if "chat" in desc.get("model_ability", []):
            return ChatModelHandle(self, model_uid, desc)
        return GenerateModelHandle(self, model_uid, desc)

    def model_logs(self, model_uid: str, offset: int = -16384) -> dict[str, Any]:
        """xitui's own route: the worker's log from `offset` ({"offset": next, "text": ...})."""
        return self._get(f"/v1/models/{model_uid}/logs", offset=offset)

    def terminate_model(self, model_uid: str) -> None:
        self._delete(f"/v1/models/{model_uid}")

    # --- the machine (xitui's own routes; Xinference answers /status and /v1/cluster/info) --------

    def status(self) -> dict[str, Any]:
        return self._get("/status")

    def resources(self) -> dict[str, Any]:
        return self._get("/v1/resources")

    def cluster_info(self) -> list[dict[str, Any]]:
        return self._get("/v1/cluster/info")


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
                raise ClientError(str(chunk["error"]), 500)
            yield chunk
    except httpx.TransportError:
        raise ClientError("the server closed the stream early", 500) from None
    finally:
        response.close()


def xinference_spec(model_type: str, model: str) -> str:
    """A spec as Xinference 4 takes it: parsed and checked with xitui's rules (so bad input gets xitui's
    one-line errors), then the version 2 form without the fields only xitui knows."""
    from xitui.core.spec import parse_spec

    data = parse_spec(model_type, model).registration()
    for key in ("is_builtin", "persisted", "prompt_style"):
        data.pop(key, None)
    return json.dumps(data)
