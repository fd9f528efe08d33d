"""Generation answers in OpenAI's shapes: one JSON body, or server-sent events chunk by chunk."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from xitui import wire
from xitui.core.errors import XituiError
from xitui.server.api.bodies import GenerationBody
from xitui.server.edge.error_body import openai_error


class ChoiceTurns:
    """When each of one request's choices (`n`) starts. `share` of them may always run together; more only
    while the model keeps a slot free for someone else (`free`: its slots not in use now), so a request
    alone uses all its model's slots but one, and beside other requests no more than its share. The next
    choice starts as one ends (a choice not started holds no slot: its worker has not been sent anything).

    Turns granted but not yet in the model's count are `unseen`: a stream calls `seen` just before it
    starts (its first message asked for), in the same step as the model counts it."""

    def __init__(self, share: int, free: Callable[[], int] | None = None):
        self.share = max(1, share)
        self.free = free
        self.running = 0
        self.unseen = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def _room(self) -> bool:
        if self.running < self.share:
            return True
        return self.free is not None and self.free() - self.unseen >= 2  # one started, one still free

    def _grant(self) -> None:
        self.running += 1
        self.unseen += 1

    def grant_now(self, most: int) -> int:
        """Turns taken at once, up to `most` (at least one)."""
        count = 0
        while count < most and (count == 0 or self._room()):
            self._grant()
            count += 1
        return count

    async def take(self) -> None:
        """Wait for a turn."""
        if not self._waiting and self._room():
            self._grant()
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():  # granted, then cancelled: hand it on
                self.unseen -= 1
                self.give_back()
            elif turn in self._waiting:
                self._waiting.remove(turn)
            raise

    def seen(self) -> None:
        self.unseen -= 1

    def give_back(self) -> None:
        """A choice ended: the next ones start while there is room."""
        self.running -= 1
        while self._waiting and self._room():
            turn = self._waiting.popleft()
            if not turn.done():
                self._grant()
                turn.set_result(None)


class ClientGone(Exception):
    """The client hung up before its answer was ready."""


async def unless_disconnected(request: Request, work: Any) -> Any:
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
    raise ClientGone


async def whole_or_first(request: Request, stream: AsyncIterator[wire.Answer], streamed: bool,
                         ) -> list[wire.Answer] | None:
    """A generation's messages to its end (a whole answer) or its first (a stream's), as the other APIs
    (Messages, Responses) write them; None when the client hung up first, the generation cancelled."""
    async def whole() -> list[wire.Answer]:
        return [msg async for msg in stream]

    async def first() -> list[wire.Answer]:
        return [await stream.__anext__()]

    try:
        return await unless_disconnected(request, first() if streamed else whole())
    except ClientGone:
        await stream.aclose()  # type: ignore[attr-defined]
        return None
    except BaseException:
        await stream.aclose()  # type: ignore[attr-defined]
        raise


@dataclass
class Whole:
    """One choice's answer, gathered (a request that does not stream)."""

    text: str
    logprobs: list[wire.TokenLogprob]
    tool_calls: list[wire.ToolCall]
    reasoning: str | None
    done: wire.Done


async def respond(request: Request, streams: list[AsyncIterator[wire.Answer]], body: GenerationBody, *,
                  chat: bool, turns: ChoiceTurns | None = None) -> Any:
    """Run a request's generations (`n` of them, one per choice); errors before the first piece become a
    4xx/5xx, later ones an error chunk.

    `turns` decides when each choice starts (None: all at once), so that a request for many choices leaves
    slots to other clients' requests.

    Until the first byte of the answer goes out, a client that hangs up cancels the generations."""
    ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())
    wants_logprobs = body.logprob_count() is not None

    async def collect(stream: AsyncIterator[wire.Answer]) -> Whole:
        pieces: list[str] = []
        entries: list[wire.TokenLogprob] = []
        calls: list[wire.ToolCall] = []
        thought: list[str] = []
        done: wire.Done | None = None
        async for msg in stream:  # to the end: the call's bookkeeping runs when it finishes
            if msg["kind"] == "done":
                done = msg
            elif msg["kind"] == "tool_calls":
                calls += msg["calls"]
            elif msg["kind"] == "reasoning":
                thought.append(msg["text"])
            elif msg["kind"] == "text":
                pieces.append(msg["text"])
                entries += msg.get("logprobs") or []
        if done is None:
            raise XituiError("the generation ended without an answer")
        return Whole("".join(pieces), entries, calls, "".join(thought) if thought else None, done)

    async def close_all() -> None:
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.aclose()  # type: ignore[attr-defined]

    turns = turns or ChoiceTurns(len(streams))

    async def collect_all() -> list[Whole]:
        async def in_turn(stream: AsyncIterator[wire.Answer]) -> Whole:
            await turns.take()
            try:
                turns.seen()
                return await collect(stream)
            finally:
                turns.give_back()

        tasks = [asyncio.ensure_future(in_turn(s)) for s in streams]  # they take their turns in this order
        try:
            return list(await asyncio.gather(*tasks))
        finally:  # one failed: the others (running or waiting their turn) end too
            for task in tasks:
                task.cancel()

    try:
        if not body.stream:
            dones = await unless_disconnected(request, collect_all())
        else:
            async def first(stream: AsyncIterator[wire.Answer]) -> wire.Answer:
                turns.seen()
                return await stream.__anext__()

            started = turns.grant_now(len(streams))
            firsts = await unless_disconnected(request, asyncio.gather(*(first(s) for s in streams[:started])))
    except ClientGone:
        await close_all()
        return Response(status_code=499)
    except BaseException:
        await close_all()
        raise
    if not body.stream:
        choices = []
        for index, whole in enumerate(dones):
            found = logprobs_field(whole.logprobs, chat) if wants_logprobs else None
            reason = whole.done["finish_reason"]
            if chat:
                message: dict[str, Any] = {"role": "assistant", "content": whole.text}
                if whole.reasoning is not None:
                    message["reasoning_content"] = whole.reasoning
                if whole.tool_calls:
                    message.update(content=whole.text or None, tool_calls=whole.tool_calls)
                choices.append({"index": index, "message": message, "logprobs": found, "finish_reason": reason})
            else:
                choices.append({"text": whole.text, "index": index, "logprobs": found, "finish_reason": reason})
        return Response(orjson.dumps({
            "id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
            "model": body.model, "choices": choices, "usage": _total([w.done["usage"] for w in dones]),
        }), media_type="application/json")

    kind = "chat.completion.chunk" if chat else "text_completion"

    def chunk(index: int, text: str | None, finish: str | None = None, usage: wire.Usage | None = None,
              role: bool = False, entries: list[wire.TokenLogprob] | None = None,
              calls: list[dict[str, Any]] | None = None, reasoning: str | None = None) -> bytes:
        found = logprobs_field(entries or [], chat) if wants_logprobs and entries is not None else None
        if chat:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            if calls is not None:
                delta["tool_calls"] = calls
            if reasoning is not None:
                delta["reasoning_content"] = reasoning
            choice = {"index": index, "delta": delta, "logprobs": found, "finish_reason": finish}
        else:
            choice = {"text": text or "", "index": index, "logprobs": found, "finish_reason": finish}
        data: dict[str, Any] = {"id": ident, "object": kind, "created": created, "model": body.model,
                                "choices": [choice] if index >= 0 else []}
        if usage is not None:
            data["usage"] = usage
        return b"data: " + orjson.dumps(data) + b"\n\n"

    many = len(streams) > 1
    # usage: {"include_usage": true} asks for OpenAI's way (a last chunk of no choice carries it), false for none;
    # without stream_options, Xinference's way: the last chunk of the answer carries it
    include = body.stream_options.include_usage if body.stream_options is not None else None
    apart = many or include is True

    def call_chunks(index: int, calls: list[wire.ToolCall], first: int) -> list[bytes]:
        """OpenAI's way: a call's id and name first, then its arguments."""
        out = []
        for k, call in enumerate(calls, start=first):
            function = call["function"]
            out.append(chunk(index, None, calls=[{"index": k, "id": call["id"], "type": "function",
                                                  "function": {"name": function["name"], "arguments": ""}}]))
            out.append(chunk(index, None, calls=[{"index": k, "function": {"arguments": function["arguments"]}}]))
        return out

    async def events() -> AsyncIterator[bytes]:
        usages: list[wire.Usage] = []
        called: dict[int, int] = {}
        try:
            if chat:
                for index in range(len(streams)):
                    yield chunk(index, None, role=True)
            async for index, msg in _merged(streams, firsts, turns):
                if msg["kind"] == "done":
                    usages.append(msg["usage"])
                    # one choice: its last chunk carries the usage; several: a last chunk of no choice does
                    yield chunk(index, "" if chat else None, finish=msg["finish_reason"],
                                usage=None if apart or include is False else msg["usage"])
                elif msg["kind"] == "tool_calls":
                    for data in call_chunks(index, msg["calls"], called.get(index, 0)):
                        yield data
                    called[index] = called.get(index, 0) + len(msg["calls"])
                elif msg["kind"] == "reasoning":
                    yield chunk(index, None, reasoning=msg["text"])
                elif msg["kind"] == "text":
                    yield chunk(index, msg["text"], entries=msg.get("logprobs"))
            if apart and include is not False:
                yield chunk(-1, None, usage=_total(usages))
        except XituiError as exc:
            # OpenAI's error event (the openai SDK raises it with its message); `detail` for Xinference's readers
            error = {"error": openai_error(str(exc), exc.status_code), "detail": str(exc)}
            yield b"data: " + orjson.dumps(error) + b"\n\n"
        finally:
            await close_all()
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


async def _merged(streams: list[AsyncIterator[wire.Answer]], firsts: list[wire.Answer],
                  turns: ChoiceTurns) -> AsyncIterator[tuple[int, wire.Answer]]:
    """(choice index, message) from every stream as they come, each stream to its `done`. The streams with a
    first message (`firsts`) run now; each of the others starts when a running one ends."""
    if len(streams) == 1:  # the common case: no tasks, no queue
        msg = firsts[0]
        while True:
            yield 0, msg
            if msg["kind"] == "done":
                return
            msg = await streams[0].__anext__()
    queue: asyncio.Queue[tuple[int, Any]] = asyncio.Queue()

    async def pump(index: int) -> None:
        if index >= len(firsts):
            await turns.take()
        try:
            if index < len(firsts):
                msg = firsts[index]
            else:
                turns.seen()
                msg = await streams[index].__anext__()
            while True:
                await queue.put((index, msg))
                if msg["kind"] == "done":
                    with contextlib.suppress(StopAsyncIteration):  # its call ends: the model counts it no more
                        await streams[index].__anext__()
                    return
                msg = await streams[index].__anext__()
        except Exception as exc:  # noqa: BLE001 - handed to the reader, which raises it
            await queue.put((index, exc))
        finally:
            turns.give_back()

    tasks = [asyncio.ensure_future(pump(i)) for i in range(len(streams))]
    try:
        left = len(streams)
        while left:
            index, msg = await queue.get()
            if isinstance(msg, BaseException):
                raise msg
            if msg["kind"] == "done":
                left -= 1
            yield index, msg
    finally:
        for task in tasks:
            task.cancel()


def _total(usages: list[wire.Usage]) -> wire.Usage:
    """The usage of a request's choices together: one prompt, every choice's tokens."""
    prompt = usages[0]["prompt_tokens"] if usages else 0
    completion = sum(u["completion_tokens"] for u in usages)
    total: wire.Usage = {"prompt_tokens": prompt, "completion_tokens": completion,
                         "total_tokens": prompt + completion}
    if usages and "prompt_tokens_details" in usages[0]:  # the prompt's cells the engine had already
        total["prompt_tokens_details"] = usages[0]["prompt_tokens_details"]
    return total


def logprobs_field(entries: list[wire.TokenLogprob], chat: bool) -> dict[str, Any]:
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
