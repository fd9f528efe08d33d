"""The HTTP server: Xinference's REST API (see shared/XINFERENCE_API.md) plus OpenAI's routes."""

from __future__ import annotations

import array
import asyncio
import base64
import hashlib
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal, overload

import orjson
from fastapi import FastAPI, Request
from fastapi import Path as FastApiPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from xitui import __version__, wire
from xitui.core.config import ServerSettings, home_dir
from xitui.core.errors import ModelFailedError, NotFoundError, XituiError
from xitui.core.machine import capacity
from xitui.core.machine import memory as machine
from xitui.core.specs.names import MODEL_TYPES
from xitui.core.specs.registry import Registry
from xitui.server.api.bodies import (
    ChatBody,
    CompletionBody,
    EmbeddingBody,
    RegisterBody,
    RerankBody,
    body_schema,
    choice_params,
)
from xitui.server.api.generation import ChoiceTurns, respond
from xitui.server.api.image_fetch import fetch_urls
from xitui.server.api.images import MAX_IMAGE_BYTES, MAX_IMAGES
from xitui.server.api.messages import CountTokensBody, MessagesBody, respond_messages
from xitui.server.api.model_input import chat_input, check_prompt, needs_thread, rerank_texts
from xitui.server.api.openapi import answers, document, streaming_ok
from xitui.server.api.responses import ResponsesBody, namespaces, respond_responses
from xitui.server.edge.api_key import BearerAuth
from xitui.server.edge.error_body import error_body
from xitui.server.edge.fast_path import FastPath, error_response
from xitui.server.edge.guard import Policy, RequestGuard
from xitui.server.edge.off_loop import off_loop
from xitui.server.edge.request_body import parse_body, problems_text, read_body
from xitui.server.runtime.launch_request import LAUNCH_BODY, LaunchBody
from xitui.server.runtime.model import Model
from xitui.server.runtime.supervisor import Supervisor

#: A model type in a path: documented as LLM or embedding (any case is read).
ModelTypePath = Annotated[str, FastApiPath(json_schema_extra={"enum": list(MODEL_TYPES)})]

# --- the app -------------------------------------------------------------------------------------


def create_app(home: Path | None = None, api_key: str | None = None,
               settings: ServerSettings | None = None) -> FastAPI:
    """The FastAPI app; `create_asgi` puts the API key check and the inference fast path in front of it.

    `settings`: the config's [server] table (ttl, n_parallel, warm, autoload, max_loaded...); defaults without."""
    home = home or home_dir()
    registry = Registry(home)
    settings = settings or ServerSettings()
    supervisor = Supervisor(registry, home, default_ttl=settings.ttl_seconds,
                            default_parallel=settings.n_parallel or None, warm_engines=settings.warm_engines,
                            default_speculative=settings.speculative,
                            allowed_envs=settings.allowed_envs, autoload=settings.autoload,
                            max_loaded=settings.max_loaded, max_loading=settings.max_loading,
                            max_restarts=settings.max_restarts)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        machine.snapshot()  # primes psutil's CPU counter
        await supervisor.warm.start()
        tasks = [asyncio.create_task(supervisor.watch_idle()), asyncio.create_task(supervisor.restore_marked())]
        # a daemon thread: a server stopped at once does not wait for the probes to end
        threading.Thread(target=capacity.prime, daemon=True, name="engine probes").start()
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await supervisor.shutdown()

    app = FastAPI(title="xitui", version=__version__, lifespan=lifespan)
    app.state.supervisor = supervisor
    app.state.registry = registry

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body(problems_text(exc.errors()), 400), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # every method served at this path, not just the first route's
            headers["Allow"] = ", ".join(sorted(methods_for(app, request.url.path)))
        return JSONResponse(error_body(str(exc.detail), exc.status_code), status_code=exc.status_code,
                            headers=headers)

    # Two registrations on purpose: Starlette answers XituiError in its exception middleware, while an
    # `Exception` handler runs in the outermost one, which logs and re-raises after answering.
    @app.exception_handler(XituiError)
    @app.exception_handler(Exception)
    async def _error(request: Request, exc: Exception) -> JSONResponse:
        return error_response(exc, request.url.path)

    # --- server ---------------------------------------------------------------------------------

    @app.get("/v1/cluster/auth")
    async def cluster_auth() -> dict[str, bool]:
        return {"auth": api_key is not None}

    @app.get("/v1/cluster/version")
    async def cluster_version() -> dict[str, str]:
        # `server` tells xitui's client which server answers (Xinference's answer has no such key)
        return {"version": __version__, "server": "xitui"}

    @app.get("/status")
    async def status() -> dict[str, Any]:
        workers = {
            uid: {"pid": m.pid, "pids": m.pids, "state": m.state, "memory_rss": m.memory_rss()}
            for uid, m in supervisor.models.items()
        }
        return {"status": "ok", "version": __version__, "pid": os.getpid(), "uptime": time.time() - started,
                "home": str(home), "workers": workers, "restored": supervisor.restored,
                "warm_worker": supervisor.warm.describe()}

    @app.get("/v1/cluster/info")
    async def cluster_info() -> list[dict[str, Any]]:
        gpus, _ = machine.gpus()
        return [{
            "node_type": "Supervisor",
            "ip_address": "127.0.0.1",
            "gpu_count": len(gpus),
            "gpu_vram_total": sum(g["memory_total"] for g in gpus),
        }]

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        """The models' requests, tokens, latencies, slots, memory, launches and unloads in Prometheus' text
        format (xitui/server/api/prometheus.py)."""
        from xitui.server.api.prometheus import CONTENT_TYPE, render

        return Response(await asyncio.to_thread(render, supervisor), media_type=CONTENT_TYPE)

    @app.get("/v1/resources")
    async def machine_resources() -> dict[str, Any]:
        owners = {pid: uid for uid, m in supervisor.models.items() for pid in m.pids}
        return machine.snapshot(owners)

    # --- registrations --------------------------------------------------------------------------

    # Parsing a spec (its chat template compiled) and reading the persisted ones are work for a thread: the
    # event loop keeps serving every other route and stream meanwhile.

    @app.post("/v1/model_registrations/{model_type}", responses=answers(400),
              openapi_extra=body_schema(RegisterBody))
    async def register_model(model_type: ModelTypePath, request: Request) -> None:
        body = await read_body(request, RegisterBody)  # a spec may be large: parsed in a thread when it is
        await asyncio.to_thread(registry.register, model_type, body.model, persist=body.persist)

    @app.get("/v1/model_registrations/{model_type}", responses=answers(400))
    async def list_registrations(model_type: ModelTypePath, detailed: bool = False) -> list[dict[str, Any]]:
        return await asyncio.to_thread(registry.list, model_type, detailed=detailed)

    @app.get("/v1/model_registrations/{model_type}/{model_name}", responses=answers(400, 404))
    async def get_registration(model_type: ModelTypePath, model_name: str) -> dict[str, Any]:
        spec = await asyncio.to_thread(registry.get, model_type, model_name)
        return spec.registration()

    @app.delete("/v1/model_registrations/{model_type}/{model_name}", responses=answers(400, 403, 404))
    async def unregister_model(model_type: ModelTypePath, model_name: str) -> None:
        await asyncio.to_thread(registry.unregister, model_type, model_name)
        supervisor.memory.forget_model(model_type, model_name)

    # --- running models -------------------------------------------------------------------------

    # Launch, estimate and rerank bodies are read as the inference routes read theirs (bodies.read_body): a
    # large one is parsed off the event loop, a launch's is refused past LAUNCH_BODY before it is read.

    @app.post("/v1/models", responses=answers(400, 404, 409), openapi_extra=body_schema(LaunchBody))
    async def launch_model(request: Request, wait_ready: bool = True) -> dict[str, str]:
        body = await read_body(request, LaunchBody, limit=LAUNCH_BODY)
        uid = await supervisor.launch(body, wait_ready=wait_ready)
        return {"model_uid": uid}

    @app.post("/v1/estimate", responses=answers(400, 404, 409), openapi_extra=body_schema(LaunchBody))
    async def estimate_launch(request: Request) -> dict[str, Any]:
        """The memory a launch would need and whether it fits now; launches nothing."""
        return await supervisor.estimate(await read_body(request, LaunchBody, limit=LAUNCH_BODY))

    @app.get("/v1/models")
    async def list_models(request: Request) -> dict[str, Any]:
        """Running models (`loaded`: true) and, with server.autoload, the registered ones a request loads
        (`loaded`: false): what an OpenAI client picks from. Xinference's client reads every entry as a
        running model, so it gets the running ones only, as Xinference answers it."""
        data = [
            {"id": uid, "object": "model", "created": int(m.launched_at), "owned_by": "xitui", "loaded": True,
             **m.describe()}
            for uid, m in supervisor.models.items()
        ]
        if supervisor.autoload and not _xinference_client(request):
            running = {m.plan.model_name.lower() for m in supervisor.models.values()} | set(supervisor.models)
            data += [{"id": entry["model_name"], "object": "model", "created": 0, "owned_by": "xitui",
                      "loaded": False, "state": "loads on request", **entry,
                      **supervisor.load_queue.listing(entry["model_name"])}
                     for entry in await asyncio.to_thread(supervisor.loadable)
                     if entry["model_name"].lower() not in running]
        return {"object": "list", "data": data}

    @app.get("/v1/models/{model_uid}", responses=answers(404))
    async def describe_model(model_uid: str) -> dict[str, Any]:
        return dict(supervisor.get(model_uid).describe())

    @app.get("/v1/models/{model_uid}/progress", responses=answers(404))
    async def launch_progress(model_uid: str) -> dict[str, Any]:
        model = supervisor.get(model_uid)
        progress, stage = model.progress()
        if model.state == "ready":
            progress, stage = 1.0, "ready"
        return {"progress": progress, "stage": stage, "state": model.state, "error": model.error,
                "download_files": [], "replicas": [r.describe() for r in model.replicas]}

    @app.get("/v1/models/{model_uid}/logs", responses=answers(400, 404))
    async def model_logs(model_uid: str, offset: int = -16384, replica: int = 0) -> dict[str, Any]:
        """A worker's log from byte `offset` (negative: that many bytes before the end), at most 64 KiB,
        and the offset to ask from next: what the dashboard's log view follows."""
        model = supervisor.get(model_uid)
        if not 0 <= replica < len(model.replicas):
            raise NotFoundError(f"model {model_uid!r} has no replica {replica} (it has {len(model.replicas)})")
        path = model.replicas[replica].log_path
        try:
            with open(path, "rb") as fh:
                size = fh.seek(0, os.SEEK_END)
                start = max(0, size + offset) if offset < 0 else min(offset, size)
                fh.seek(start)
                data = fh.read(65536)
        except OSError:
            return {"offset": 0, "text": ""}
        return {"offset": start + len(data), "text": data.decode("utf-8", errors="replace")}

    @app.delete("/v1/models/{model_uid}", responses=answers(404))
    async def terminate_model(model_uid: str) -> None:
        await supervisor.terminate(model_uid)

    # --- inference ------------------------------------------------------------------------------

    def choices(request: Request, body: CompletionBody | ChatBody) -> list[wire.Params]:
        """The worker's parameters for each choice, with whose cached prompts it may reuse (cache_scope)."""
        scope = cache_scope(request, api_key)
        params = choice_params(body)
        if scope:
            for p in params:
                p["cache_key"] = scope
        return params

    # The inference routes read their bodies themselves (orjson + the same pydantic models): FastAPI's
    # per-request machinery cost more than the rest of an embedding request. The schema stays documented.

    @app.post("/v1/completions", openapi_extra=body_schema(CompletionBody),
              responses={**streaming_ok(), **answers(400, 404, 500)})
    async def completions(request: Request) -> Any:
        body = await read_body(request, CompletionBody)
        prompt = body.prompt
        if isinstance(prompt, list):
            if len(prompt) != 1 or not isinstance(prompt[0], str):
                raise XituiError("prompt: send one prompt per request")
            prompt = prompt[0]
        model = await supervisor.ready(body.model, "generate")
        check_prompt(model, prompt)
        # a response_format schema is checked keyword by keyword: off the event loop
        params = await off_loop(choices, request, body) if needs_thread(body) else choices(request, body)
        streams = [supervisor.call(model.uid, wire.generate(prompt, p)) for p in params]
        return await respond(request, streams, body, chat=False, turns=choice_turns(model))

    async def chat_work(request: Request, body: ChatBody, model: Any) -> tuple[wire.ChatRequest, list[wire.Params]]:
        """A chat body's request to the worker and each choice's parameters: image URLs fetched where the server
        fetches them (on the loop: a slow host holds no thread), tools and schemas checked, serialized and
        counted off the event loop."""
        if settings.image_urls != "off" and model.reads_images:
            await fetch_urls(body, settings.image_urls, MAX_IMAGE_BYTES, MAX_IMAGES)

        def prepare() -> tuple[wire.ChatRequest, list[wire.Params]]:
            return chat_input(body, model), choices(request, body)

        return await off_loop(prepare) if needs_thread(body) else prepare()

    @app.post("/v1/chat/completions", openapi_extra=body_schema(ChatBody),
              responses={**streaming_ok(), **answers(400, 404, 500)})
    async def chat_completions(request: Request) -> Any:
        body = await read_body(request, ChatBody)
        model = await supervisor.ready(body.model, "chat")
        work, params = await chat_work(request, body, model)
        streams = [supervisor.call(model.uid, {**work, "params": p}) for p in params]
        return await respond(request, streams, body, chat=True, turns=choice_turns(model))

    async def translated(request: Request, chat: dict[str, Any]) -> tuple[str, str, wire.ChatRequest]:
        """Another API's request read as the chat request it asks for (checked as chat completions' are): its
        model's name and uid, and the one request to send the worker."""
        body = parse_body(orjson.dumps(chat), ChatBody)
        model = await supervisor.ready(body.model, "chat")
        work, params = await chat_work(request, body, model)
        return body.model, model.uid, {**work, "params": params[0]}

    @app.post("/v1/messages", openapi_extra=body_schema(MessagesBody),
              responses={**streaming_ok(), **answers(400, 404, 500)})
    async def anthropic_messages(request: Request) -> Any:
        """Anthropic's Messages API (Claude Code, the anthropic SDK), served as a chat request."""
        asked = await read_body(request, MessagesBody)
        name, uid, work = await translated(request, asked.chat_dict())
        if asked.stream:
            work["params"] = {**work["params"], "counted": True}
        return await respond_messages(request, supervisor.call(uid, work), name, asked.stream,
                                      asked.stop_sequences or [])

    @app.post("/v1/responses", openapi_extra=body_schema(ResponsesBody),
              responses={**streaming_ok(), **answers(400, 404, 500)})
    async def openai_responses(request: Request) -> Any:
        """OpenAI's Responses API (Codex, the openai SDK's responses), served as a chat request."""
        asked = await read_body(request, ResponsesBody)
        name, uid, work = await translated(request, asked.chat_dict())
        return await respond_responses(request, supervisor.call(uid, work), name, asked.stream, asked.echoed(),
                                       namespaces(asked.tools))

    @app.post("/v1/messages/count_tokens", openapi_extra=body_schema(CountTokensBody), responses=answers(400, 404))
    async def anthropic_count_tokens(request: Request) -> dict[str, int]:
        """The tokens a Messages request's prompt takes on its model (rendered and tokenized; nothing written)."""
        asked = await read_body(request, CountTokensBody)
        _, uid, work = await translated(request, asked.chat_dict())
        work["params"] = {**work["params"], "count_only": True}
        async for msg in supervisor.call(uid, work):
            if msg["kind"] == "done":
                return {"input_tokens": msg["usage"]["prompt_tokens"]}
        raise ModelFailedError("the model gave no count")

    @app.post("/v1/embeddings", openapi_extra=body_schema(EmbeddingBody), responses=answers(400, 404, 500))
    async def embeddings(request: Request) -> Response:
        body = await read_body(request, EmbeddingBody)
        texts = [body.input] if isinstance(body.input, str) else list(body.input)
        if not texts:
            raise XituiError("input: must hold at least one text")
        if body.encoding_format not in ("float", "base64"):
            raise XituiError("encoding_format: must be float or base64")
        model = await supervisor.ready(body.model, "embed")
        result = await last(supervisor.call(model.uid, wire.embed(texts, body.truncate, body.dimensions)), "embedded")
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

    @app.post("/v1/rerank", responses=answers(400, 404, 500), openapi_extra=body_schema(RerankBody))
    async def rerank(request: Request) -> Response:
        """The documents ordered by their relevance to the query, best first, each with its index in the
        request and its score (Xinference's answer; `document` with return_documents)."""
        body = await read_body(request, RerankBody)
        model = await supervisor.ready(body.model, "rerank")
        query, documents = rerank_texts(model, body.query, body.documents)  # what the model reads, no more
        result = await last(supervisor.call(model.uid, wire.rerank(query, documents)), "reranked")
        order = sorted(range(len(body.documents)), key=lambda i: -result["scores"][i])[:body.top_n]
        return Response(orjson.dumps({
            "id": str(uuid.uuid4()),
            "results": [{"index": i, "relevance_score": result["scores"][i],
                         "document": {"text": body.documents[i]} if body.return_documents else None}
                        for i in order],
            "meta": {"api_version": None, "billed_units": None, "warnings": None,
                     "tokens": {"input_tokens": result["tokens"], "output_tokens": 0} if body.return_len else None},
        }), media_type="application/json")

    document(app)
    app.state.fast_routes = {
        "/v1/completions": completions,
        "/v1/chat/completions": chat_completions,
        "/v1/embeddings": embeddings,
    }
    return app


def create_asgi(home: Path | None = None, api_key: str | None = None, policy: Policy | None = None,
                settings: ServerSettings | None = None) -> Any:
    """What uvicorn serves: the request guard (Host, Origin, CORS, body type and size), the API key check,
    the inference fast path, then the FastAPI app. (Who is on the other end of a connection is checked
    before any of these: xitui/server/edge/connection.py.)"""
    app = create_app(home, api_key, settings)
    inner = BearerAuth(FastPath(app), api_key=api_key)
    return RequestGuard(inner, policy or Policy.for_bind("127.0.0.1"),
                        takes_body=lambda path: "POST" in methods_for(app, path))


def methods_for(app: FastAPI, path: str) -> set[str]:
    """The methods some route serves at `path` (Starlette's 405 names only the first route's)."""
    return {method for route in app.routes if isinstance(route, APIRoute) and route.path_regex.match(path)
            for method in route.methods or ()}


@overload
async def last(stream: AsyncIterator[wire.Answer], kind: Literal["embedded"]) -> wire.Embedded: ...


@overload
async def last(stream: AsyncIterator[wire.Answer], kind: Literal["reranked"]) -> wire.Reranked: ...


async def last(stream: AsyncIterator[wire.Answer], kind: str) -> wire.Answer:
    """The message that ends a request answered at once (an embed, a rerank), checked to be of `kind`."""
    found: wire.Answer | None = None
    async for msg in stream:
        found = msg
    if found is None or found["kind"] != kind:
        raise ModelFailedError(f"the worker answered {found['kind'] if found else 'nothing'}, not {kind}")
    return found


def choice_turns(model: Model) -> ChoiceTurns:
    """When a request's choices start: half the model's slots at least, all but one while a slot stays free
    for others (generation.ChoiceTurns)."""
    return ChoiceTurns(model.choice_share(), model.free_slots)


def cache_scope(request: Request, api_key: str | None) -> str | None:
    """Whose cached prompts a generation may start from (docs/security.md): with an API key, those
    of requests sent with the same key, named by a hash of it (never the key itself); without one, everyone's
    (None: the server answers its own user alone, unless configured otherwise)."""
    if not api_key:
        return None
    given = request.headers.get("authorization", "").encode("latin-1", "replace")
    if not given and "x-api-key" in request.headers:  # (the same key as Anthropic's clients send it)
        given = b"Bearer " + request.headers["x-api-key"].encode("latin-1", "replace")
    return "key:" + hashlib.sha256(given).hexdigest()[:32]


def _xinference_client(request: Request) -> bool:
    """Whether the request comes from Xinference's Python client (it lists models with `requests`)."""
    return request.headers.get("user-agent", "").startswith("python-requests/")
