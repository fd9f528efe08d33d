"""Generation answers in OpenAI's shapes: one JSON body, or server-sent events chunk by chunk."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from xitui.core.errors import XituiError
from xitui.server.bodies import GenerationBody


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


async def respond(request: Request, stream: AsyncIterator[dict[str, Any]], body: GenerationBody, *,
                   chat: bool) -> Any:
    """Run a generation; errors before the first piece become a 4xx/5xx, later ones an error chunk.

    Until the first byte of the answer goes out, a client that hangs up cancels the generation."""
    ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())

    wants_logprobs = body.logprob_count() is not None

    async def collect() -> dict[str, Any]:
        pieces: list[str] = []
        entries: list[dict[str, Any]] = []
        done: dict[str, Any] | None = None
        async for msg in stream:  # to the end: the call's bookkeeping runs when it finishes
            if "done" in msg:
                done = msg["done"]
            else:
                pieces.append(msg["text"])
                entries += msg.get("logprobs") or []
        if done is None:
            raise XituiError("the generation ended without an answer")
        return {"text": "".join(pieces), "logprobs": entries, **done}

    try:
        if not body.stream:
            done = await _unless_disconnected(request, collect())
        else:
            first = await _unless_disconnected(request, stream.__anext__())
    except _ClientGone:
        await stream.aclose()
        return Response(status_code=499)
    if not body.stream:
        found = logprobs_field(done["logprobs"], chat) if wants_logprobs else None
        if chat:
            choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": done["text"]},
                                      "logprobs": found, "finish_reason": done["finish_reason"]}
        else:
            choice = {"text": done["text"], "index": 0, "logprobs": found, "finish_reason": done["finish_reason"]}
        return Response(orjson.dumps({
            "id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
            "model": body.model, "choices": [choice], "usage": done["usage"],
        }), media_type="application/json")

    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(text: str | None, finish: str | None = None, usage: dict[str, Any] | None = None,
              role: bool = False, entries: list[dict[str, Any]] | None = None) -> bytes:
        found = logprobs_field(entries or [], chat) if wants_logprobs and entries is not None else None
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": found, "finish_reason": finish}
        else:
            choice = {"text": text or "", "index": 0, "logprobs": found, "finish_reason": finish}
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
                yield chunk(msg["text"], entries=msg.get("logprobs"))
                msg = await stream.__anext__()
        except XituiError as exc:
            yield b"data: " + orjson.dumps({"error": str(exc), "detail": str(exc)}) + b"\n\n"
        finally:
            await stream.aclose()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def logprobs_field(entries: list[dict[str, Any]], chat: bool) -> dict[str, Any]:
    """The worker's per-token entries in OpenAI's shape: chat's `{"content": [...]}`, or the completions
    API's parallel lists (tokens, token_logprobs, top_logprobs as {token: logprob}, text_offset)."""
    if chat:
        return {"content": entries}
    offsets, at = [], 0
    for entry in entries:
        offsets.append(at)
        at += len(entry["token"])
    return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
            "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
            "text_offset": offsets}
