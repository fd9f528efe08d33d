"""The HTTP server: Xinference's REST API (see shared/XINFERENCE_API.md) plus OpenAI's routes."""

from __future__ import annotations

import array
import asyncio
import base64
import contextlib
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from xitui import __version__
from xitui.core.config import home_dir
from xitui.core.errors import XituiError
from xitui.core.registry import Registry
from xitui.core.spec import normalise_model_type
from xitui.server import resources
from xitui.server.supervisor import Supervisor

log = logging.getLogger("xitui.server")


# --- request bodies (extra keys are kept: clients send more than these) --------------------------


class _Body(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())


class RegisterBody(_Body):
    model: str | dict[str, Any]
    persist: bool = False
    worker_ip: str | None = None


class LaunchBody(_Body):
    model_uid: str | None = None
    model_name: str
    model_type: str = "LLM"
    model_engine: str | None = None
    model_format: str | None = None
    model_size_in_billions: int | float | str | None = None
    quantization: str | None = None
    replica: int = 1
    n_gpu: int | str | None = "auto"
    envs: dict[str, str] | None = None


class _GenerationBody(_Body):
    model: str
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    ignore_eos: bool | None = None
    stream: bool = False


class CompletionBody(_GenerationBody):
    prompt: str | list[str]


class ChatBody(_GenerationBody):
    messages: list[dict[str, Any]]


class EmbeddingBody(_Body):
    model: str
    input: str | list[str]
    #: "float" (lists of numbers) or "base64" (little-endian float32, what OpenAI's client asks for)
    encoding_format: str = "float"
    #: Cut inputs longer than the model's max_tokens (the response says so); false refuses them.
    truncate: bool = True


_PARAM_KEYS = ("max_tokens", "temperature", "top_p", "top_k", "stop", "stop_token_ids", "seed",
               "presence_penalty", "frequency_penalty", "repeat_penalty", "ignore_eos")


#: Tokens generated when a request names no max_tokens (OpenAI's completions default of 16 cuts answers
#: short; running on to the end of the context keeps a base model busy for minutes).
DEFAULT_MAX_TOKENS = 256


def _params(body: _GenerationBody) -> dict[str, Any]:
    params = {k: getattr(body, k) for k in _PARAM_KEYS if getattr(body, k) is not None}
    params.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
    return params


# --- the app -------------------------------------------------------------------------------------


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


def create_app(home: Path | None = None, api_key: str | None = None, *, enforce_key: bool = True) -> FastAPI:
    home = home or home_dir()
    registry = Registry(home)
    supervisor = Supervisor(registry, home)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resources.snapshot()  # primes psutil's CPU counter
        yield
        await supervisor.shutdown()

    app = FastAPI(title="xitui", version=__version__, lifespan=lifespan)
    app.state.supervisor = supervisor
    app.state.registry = registry
    if enforce_key:  # create_asgi checks the key in front of everything instead
        app.add_middleware(BearerAuth, api_key=api_key)

    @app.exception_handler(XituiError)
    async def _xitui_error(request: Request, exc: XituiError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_text(exc)}, status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error on %s", request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)

    # --- server ---------------------------------------------------------------------------------

    @app.get("/v1/cluster/auth")
    async def cluster_auth() -> dict[str, bool]:
        return {"auth": api_key is not None}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        import os

        workers = {
            uid: {"pid": m.pid, "state": m.state, "memory_rss": m.describe()["memory_rss"]}
            for uid, m in supervisor.models.items()
        }
        return {"status": "ok", "version": __version__, "pid": os.getpid(), "uptime": time.time() - started,
                "home": str(home), "workers": workers}

    @app.get("/v1/cluster/info")
    async def cluster_info() -> list[dict[str, Any]]:
        gpus, _ = resources.gpus()
        return [{
            "node_type": "Supervisor",
            "ip_address": "127.0.0.1",
            "gpu_count": len(gpus),
            "gpu_vram_total": sum(g["memory_total"] for g in gpus),
        }]

    @app.get("/v1/resources")
    async def machine_resources() -> dict[str, Any]:
        return resources.snapshot()

    # --- registrations --------------------------------------------------------------------------

    @app.post("/v1/model_registrations/{model_type}")
    async def register_model(model_type: str, body: RegisterBody) -> None:
        registry.register(model_type, body.model, persist=body.persist)

    @app.get("/v1/model_registrations/{model_type}")
    async def list_registrations(model_type: str, detailed: bool = False) -> list[dict[str, Any]]:
        return registry.list(model_type, detailed=detailed)

    @app.get("/v1/model_registrations/{model_type}/{model_name}")
    async def get_registration(model_type: str, model_name: str) -> dict[str, Any]:
        return registry.get(model_type, model_name).registration()

    @app.delete("/v1/model_registrations/{model_type}/{model_name}")
    async def unregister_model(model_type: str, model_name: str) -> None:
        registry.unregister(model_type, model_name)

    # --- running models -------------------------------------------------------------------------

    @app.post("/v1/models")
    async def launch_model(body: LaunchBody, wait_ready: bool = True) -> dict[str, str]:
        request = body.model_dump()
        normalise_model_type(body.model_type)
        uid = await supervisor.launch(request, wait_ready=wait_ready)
        return {"model_uid": uid}

    @app.get("/v1/models")
    async def list_models() -> dict[str, Any]:
        data = [
            {"id": uid, "object": "model", "created": int(m.launched_at), "owned_by": "xitui", **m.describe()}
            for uid, m in supervisor.models.items()
        ]
        return {"object": "list", "data": data}

    @app.get("/v1/models/{model_uid}")
    async def describe_model(model_uid: str) -> dict[str, Any]:
        return supervisor.get(model_uid).describe()

    @app.get("/v1/models/{model_uid}/progress")
    async def launch_progress(model_uid: str) -> dict[str, Any]:
        model = supervisor.get(model_uid)
        return {"progress": model.progress, "stage": model.stage, "state": model.state, "error": model.error,
                "download_files": [], "replicas": []}

    @app.delete("/v1/models/{model_uid}")
    async def terminate_model(model_uid: str) -> None:
        await supervisor.terminate(model_uid)

    # --- inference ------------------------------------------------------------------------------

    # The inference routes read their bodies themselves (orjson + the same pydantic models): FastAPI's
    # per-request machinery cost more than the rest of an embedding request. The schema stays documented.

    @app.post("/v1/completions", openapi_extra=_body_schema(CompletionBody))
    async def completions(request: Request) -> Any:
        body = await _read(request, CompletionBody)
        prompt = body.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1 or not isinstance(prompt[0], str):
                raise XituiError("prompt: send one prompt per request")
            prompt = prompt[0]
        _require_ability(supervisor, body.model, "generate")
        stream = supervisor.call(body.model, "generate", {"prompt": prompt, "params": _params(body)})
        return await _respond(request, stream, body, chat=False)

    @app.post("/v1/chat/completions", openapi_extra=_body_schema(ChatBody))
    async def chat_completions(request: Request) -> Any:
        body = await _read(request, ChatBody)
        _require_ability(supervisor, body.model, "chat")
        stream = supervisor.call(body.model, "chat", {"messages": body.messages, "params": _params(body)})
        return await _respond(request, stream, body, chat=True)

    @app.post("/v1/embeddings", openapi_extra=_body_schema(EmbeddingBody))
    async def embeddings(request: Request) -> Response:
        body = await _read(request, EmbeddingBody)
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts:
            raise XituiError("input: must hold at least one text")
        if body.encoding_format not in ("float", "base64"):
            raise XituiError("encoding_format: must be float or base64")
        model = supervisor.get(body.model)
        if model.plan.model_type != "embedding":
            raise XituiError(f"model {body.model!r} is an LLM, not an embedding model")
        result: dict[str, Any] = {}
        async for msg in supervisor.call(body.model, "embed", {"input": texts, "truncate": body.truncate}):
            result = msg["result"]
        raw = base64.b64decode(result["vectors_b64"])
        width = len(raw) // result["count"]
        rows = [raw[i * width:(i + 1) * width] for i in range(result["count"])]
        if body.encoding_format == "base64":
            vectors: list[Any] = [base64.b64encode(row).decode() for row in rows]
        else:
            vectors = [array.array("f", row).tolist() for row in rows]
        payload = {
            "object": "list",
            "model": body.model,
            "data": [{"index": i, "object": "embedding", "embedding": v} for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": result["tokens"], "total_tokens": result["tokens"]},
            "truncated": result["truncated"],
        }
        return Response(orjson.dumps(payload), media_type="application/json")

    app.state.fast_routes = {
        "/v1/completions": completions,
        "/v1/chat/completions": chat_completions,
        "/v1/embeddings": embeddings,
    }
    return app


class FastPath:
    """Serves the inference POST routes straight from the ASGI call, past Starlette's middleware stack and
    router: at a few hundred embedding requests a second, that machinery cost more server CPU than the
    request itself, CPU the model needs. The handlers are the same functions the FastAPI routes run (those
    stay, for the OpenAPI document); errors take the same form."""

    def __init__(self, app: FastAPI):
        self.app = app
        self.routes: dict[str, Any] = app.state.fast_routes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        handler = self.routes.get(scope["path"]) if scope["type"] == "http" and scope["method"] == "POST" else None
        if handler is None:
            return await self.app(scope, receive, send)
        try:
            response = await handler(Request(scope, receive))
        except XituiError as exc:
            response = JSONResponse({"detail": str(exc)}, status_code=exc.status_code)
        except Exception as exc:
            log.exception("internal error on %s", scope["path"])
            response = JSONResponse({"detail": f"internal error: {type(exc).__name__}: {exc}"}, status_code=500)
        await response(scope, receive, send)


def create_asgi(home: Path | None = None, api_key: str | None = None) -> Any:
    """What uvicorn serves: the API key check, then the inference fast path, then the FastAPI app."""
    app = create_app(home, api_key=api_key, enforce_key=False)
    return BearerAuth(FastPath(app), api_key=api_key)


_B = TypeVar("_B", bound=BaseModel)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


async def _read(request: Request, model: type[_B]) -> _B:
    """Parse and check a JSON body; any problem is a 400 with a one-line detail."""
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise XituiError("request body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()]
        raise XituiError("; ".join(problems)) from None


def _require_ability(supervisor: Supervisor, uid: str, ability: str) -> None:
    model = supervisor.get(uid)
    if model.plan.model_type != "LLM":
        raise XituiError(f"model {uid!r} is an embedding model: use /v1/embeddings")
    abilities = model.plan.registration.get("model_ability", [])
    if ability not in abilities:
        raise XituiError(f"model {uid!r} cannot {ability} (its abilities: {', '.join(abilities)})")


def _validation_text(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors():
        if err.get("type") == "json_invalid":
            return "request body is not valid JSON"
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        problems.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"


class _ClientGone(Exception):
    """The client hung up before its answer was ready."""


async def _unless_disconnected(request: Request, work: Any) -> Any:
    """Await `work`, but give up (cancelling it, and with it the worker's generation) if the client leaves."""
    task = asyncio.ensure_future(work)

    async def hang_up() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(hang_up())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, XituiError):
        await task
    raise _ClientGone


async def _respond(request: Request, stream: AsyncIterator[dict[str, Any]], body: _GenerationBody, *,
                   chat: bool) -> Any:
    """Run a generation; errors before the first piece become a 4xx/5xx, later ones an error chunk.

    Until the first byte of the answer goes out, a client that hangs up cancels the generation."""
    ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())

    async def collect() -> dict[str, Any]:
        pieces: list[str] = []
        done: dict[str, Any] | None = None
        async for msg in stream:  # to the end: the call's bookkeeping runs when it finishes
            if "done" in msg:
                done = msg["done"]
            else:
                pieces.append(msg["text"])
        if done is None:
            raise XituiError("the generation ended without an answer")
        return {"text": "".join(pieces), **done}

    try:
        if not body.stream:
            done = await _unless_disconnected(request, collect())
        else:
            first = await _unless_disconnected(request, stream.__anext__())
    except _ClientGone:
        await stream.aclose()
        return Response(status_code=499)
    if not body.stream:
        if chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": done["text"]},
                                      "finish_reason": done["finish_reason"]}
        else:
            choice = {"text": done["text"], "index": 0, "logprobs": None, "finish_reason": done["finish_reason"]}
        return Response(orjson.dumps({
            "id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
            "model": body.model, "choices": [choice], "usage": done["usage"],
        }), media_type="application/json")

    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(text: str | None, finish: str | None = None, usage: dict[str, Any] | None = None,
              role: bool = False) -> bytes:
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
        else:
            choice = {"text": text or "", "index": 0, "logprobs": None, "finish_reason": finish}
        data: dict[str, Any] = {"id": ident, "object": kind, "created": created, "model": body.model,
                                "choices": [choice]}
        if usage is not None:
            data["usage"] = usage
        return b"data: " + orjson.dumps(data) + b"\n\n"

    async def events() -> AsyncIterator[bytes]:
        try:
            if chat:
                yield chunk(None, role=True)
            msg = first
            while True:
                if "done" in msg:
                    done = msg["done"]
                    yield chunk("" if chat else None, finish=done["finish_reason"], usage=done["usage"])
                    break
                yield chunk(msg["text"])
                msg = await stream.__anext__()
        except XituiError as exc:
            yield b"data: " + orjson.dumps({"error": str(exc), "detail": str(exc)}) + b"\n\n"
        finally:
            await stream.aclose()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


__all__ = ["create_app", "Response"]
