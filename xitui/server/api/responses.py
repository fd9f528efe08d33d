"""OpenAI's Responses API (`POST /v1/responses`), as Codex and the openai SDK's `responses` send it, read into the
chat request the rest of the server serves (bodies.ChatBody): instructions, input as text or items (messages,
function calls and their outputs, reasoning), function tools, tool_choice, `text.format`. What comes back is a
response object, or its stream of events, from the same wire messages as chat completions.

Nothing is kept: `store: true` and `previous_response_id` are refused (send the whole conversation as input,
as Codex does with `store: false`); a response lives only in its answer.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from xitui import wire
from xitui.core.chat_format.input_size import check_depth
from xitui.core.errors import XituiError
from xitui.server.api.bodies import MAX_DESCRIPTION

#: Input items in one request, and parts in one message (a conversation that long fits no context anyway).
MAX_ITEMS = 10_000
MAX_PARTS = 1000
#: Functions one request may give, those of namespaces included (chat completions' bound on tools).
MAX_FUNCTIONS = 128


class Part(BaseModel):
    """A part of a message's content: input_text, output_text, refusal, input_image."""

    model_config = ConfigDict(extra="allow")
    type: Annotated[str, Field(max_length=32)]
    text: str | None = None
    #: input_image: a data URL or an URL (the server's fetch rules apply)
    image_url: str | None = None


class Item(BaseModel):
    """An input item: a message (type "message" or none, with a role), a function_call, a
    function_call_output, or a reasoning item (not read back: a local model does not read its old thoughts)."""

    model_config = ConfigDict(extra="allow")
    type: Annotated[str, Field(max_length=32)] = "message"
    role: Literal["user", "assistant", "system", "developer"] | None = None
    content: str | Annotated[list[Part], Field(max_length=MAX_PARTS)] | None = None
    #: function_call
    call_id: Annotated[str, Field(max_length=256)] | None = None
    name: Annotated[str, Field(max_length=64)] | None = None
    arguments: str | None = None
    #: function_call_output
    output: str | Annotated[list[Part], Field(max_length=MAX_PARTS)] | None = None


class FunctionTool(BaseModel):
    """A function the model may call (the Responses API's flat shape: name and parameters at the top)."""

    model_config = ConfigDict(extra="ignore")
    type: Annotated[str, Field(max_length=64)]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")] | None = None
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(FunctionTool):
    """A tool of the request: a function, a namespace of functions (Codex's multi_agent_v1), or one of OpenAI's
    hosted tools (web_search...), which no local model runs: those are left out, as the model never saw them
    (Codex sends web_search to every model; refusing it would stop Codex)."""

    tools: Annotated[list[FunctionTool], Field(max_length=128)] | None = None


class NamedChoice(BaseModel):
    """tool_choice {"type": "function", "name": ...}: that function."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    name: Annotated[str, Field(max_length=64)]


class TextFormat(BaseModel):
    """text.format: text, json_object, or json_schema with its name and schema."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object", "json_schema"]
    name: Annotated[str, Field(max_length=64)] | None = None
    schema_: Annotated[dict[str, Any] | None, Field(alias="schema")] = None
    strict: bool | None = None


class Reasoning(BaseModel):
    """reasoning: a model that thinks does; `effort` "none" asks it not to where its template can."""

    model_config = ConfigDict(extra="ignore")
    effort: Annotated[str, Field(max_length=16)] | None = None
    summary: Annotated[str, Field(max_length=16)] | None = None


def _metadata(value: object) -> object:
    """OpenAI's bounds on metadata (it is repeated in every response event): 16 pairs of text."""
    if value is None:
        return value
    if not isinstance(value, dict) or len(value) > 16 or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512 for k, v in value.items()):
        raise ValueError("at most 16 pairs of a text key (64 characters at most) and a text value (512 at most)")
    return value


def _items(value: object) -> object:
    if isinstance(value, list) and not value:
        raise ValueError("a text, or a list of at least one item")
    return value


class TextOptions(BaseModel):
    """text: the answer's format."""

    model_config = ConfigDict(extra="ignore")
    format: TextFormat | None = None


def _part_text(parts: str | list[Part] | None, where: str) -> str:
    """Text parts joined (a function's output, a system message)."""
    if parts is None or isinstance(parts, str):
        return parts or ""
    texts = []
    for i, part in enumerate(parts):
        if part.type not in ("input_text", "output_text", "text"):
            raise XituiError(f"{where}[{i}]: {part.type!r} parts are not read here (text only)")
        texts.append(part.text or "")
    return "".join(texts)


def _content(item: Item, where: str) -> str | list[dict[str, Any]]:
    """A message's content in chat's shape: text, or parts with images."""
    if item.content is None or isinstance(item.content, str):
        return item.content or ""
    parts: list[dict[str, Any]] = []
    for i, part in enumerate(item.content):
        if part.type in ("input_text", "output_text", "text"):
            parts.append({"type": "text", "text": part.text or ""})
        elif part.type == "refusal":
            parts.append({"type": "text", "text": str((part.model_extra or {}).get("refusal") or "")})
        elif part.type == "input_image" and item.role == "user":
            if not part.image_url:
                raise XituiError(f"{where}[{i}]: an input_image needs its image_url (file ids are not kept here)")
            parts.append({"type": "image_url", "image_url": {"url": part.image_url}})
        else:
            raise XituiError(f"{where}[{i}]: {part.type!r} parts are not read in a {item.role} message")
    if all(p["type"] == "text" for p in parts):
        return "".join(p["text"] for p in parts)
    return parts


def chat_messages(instructions: str | None, given: str | list[Item]) -> list[dict[str, Any]]:
    """The conversation in chat's shape: the instructions as the system message; function calls that follow
    one another (a parallel call) as one assistant message's tool_calls; their outputs as tool messages."""
    out: list[dict[str, Any]] = []
    if instructions:
        out.append({"role": "system", "content": instructions})
    if isinstance(given, str):
        out.append({"role": "user", "content": given})
        return out
    for i, item in enumerate(given):
        where = f"input[{i}]"
        if item.type == "message":
            if item.role is None:
                raise XituiError(f"{where}.role: a message has a role (user, assistant, system or developer)")
            out.append({"role": item.role, "content": _content(item, f"{where}.content")})
        elif item.type == "function_call":
            if not item.call_id or not item.name or item.arguments is None:
                raise XituiError(f"{where}: a function_call has its call_id, name and arguments")
            call = {"id": item.call_id, "type": "function", "function": {"name": item.name,
                                                                         "arguments": item.arguments}}
            last = out[-1] if out else None
            if last is not None and last["role"] == "assistant" and last.get("tool_calls") is not None:
                last["tool_calls"].append(call)
            elif last is not None and last["role"] == "assistant" and isinstance(last.get("content"), str):
                last["tool_calls"] = [call]  # the text the model wrote before its call
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif item.type == "function_call_output":
            if not item.call_id:
                raise XituiError(f"{where}: a function_call_output has the call_id it answers")
            out.append({"role": "tool", "tool_call_id": item.call_id,
                        "content": _part_text(item.output, f"{where}.output")})
        elif item.type == "reasoning":
            continue
        else:
            raise XituiError(f"{where}: {item.type!r} items are not read here (messages, function calls and "
                             "their outputs are)")
    return out


def namespaces(tools: list[Tool] | None) -> dict[str, str]:
    """The namespace of each function that is in one, by the function's name (a call to it says its namespace)."""
    return {f.name: t.name for t in tools or [] if t.type == "namespace" and t.name for f in t.tools or []
            if f.name}


def chat_tools(tools: list[Tool] | None, choice: Any, parallel: bool | None) -> dict[str, Any]:
    """`tools`, `tool_choice` and `parallel_tool_calls` of the chat request: functions, and those of namespaces
    by their own names."""
    out: dict[str, Any] = {}
    functions = []
    given: list[tuple[str, FunctionTool]] = [(f"tools[{i}]", tool) for i, tool in enumerate(tools or [])
                                             if tool.type == "function"]
    for i, tool in enumerate(tools or []):
        if tool.type == "namespace":
            for j, inner in enumerate(tool.tools or []):
                if inner.type != "function":
                    raise XituiError(f"tools[{i}].tools[{j}]: a namespace holds functions, not {inner.type!r}")
                given.append((f"tools[{i}].tools[{j}]", inner))
    if len(given) > MAX_FUNCTIONS:
        raise XituiError(f"tools: {len(given)} functions, namespaces' included; at most {MAX_FUNCTIONS}")
    seen: set[str] = set()
    for where, function in given:
        if not function.name:
            raise XituiError(f"{where}.name: a function tool has a name")
        if function.name in seen:
            raise XituiError(f"{where}.name: two functions are named {function.name!r}")
        seen.add(function.name)
        check_depth(function.parameters, f"{where}.parameters")
        functions.append({"type": "function", "function": {
            "name": function.name, "description": function.description,
            "parameters": function.parameters if function.parameters is not None else {"type": "object"}}})
    if functions:
        out["tools"] = functions
    if isinstance(choice, NamedChoice):
        out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
    elif choice is not None:
        out["tool_choice"] = choice
    if parallel is not None and functions:
        out["parallel_tool_calls"] = parallel
    return out


class ResponsesBody(BaseModel):
    """POST /v1/responses: OpenAI's request. Fields that change nothing a local model writes (metadata,
    client_metadata, prompt_cache_key, include, service_tier, truncation, user, reasoning's summary) are
    accepted and left."""

    model_config = ConfigDict(extra="allow")
    model: Annotated[str, Field(max_length=200)]
    input: Annotated[str | Annotated[list[Item], Field(min_length=1, max_length=MAX_ITEMS)],
                     BeforeValidator(_items)]
    instructions: str | None = None
    max_output_tokens: Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, allow_inf_nan=False)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    stream: Annotated[bool, Field(strict=True)] = False
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedChoice | None = None
    parallel_tool_calls: Annotated[bool, Field(strict=True)] | None = None
    text: TextOptions | None = None
    #: {"effort": ..., "summary": ...}: a model that reasons does, one that does not ignores it
    reasoning: Reasoning | None = None
    metadata: Annotated[dict[str, str] | None, BeforeValidator(_metadata)] = None
    store: bool | None = None
    previous_response_id: Annotated[str, Field(max_length=256)] | None = None

    def chat_dict(self) -> dict[str, Any]:
        """The chat completions request this asks for (bodies.ChatBody reads and checks it)."""
        if self.previous_response_id is not None:
            raise XituiError("previous_response_id: responses are not kept here; send the conversation as input")
        if self.store:
            raise XituiError("store: responses are not kept here; send store: false (and the conversation as input)")
        out: dict[str, Any] = {"model": self.model, "stream": self.stream,
                               "messages": chat_messages(self.instructions, self.input),
                               **chat_tools(self.tools, self.tool_choice, self.parallel_tool_calls)}
        # without a limit, as OpenAI's: up to the end of the context (chat completions' default is 256 tokens)
        out["max_tokens"] = self.max_output_tokens if self.max_output_tokens is not None else 2**31 - 1
        for key in ("temperature", "top_p"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        form = self.text.format if self.text is not None else None
        if form is not None and form.type == "json_object":
            out["response_format"] = {"type": "json_object"}
        elif form is not None and form.type == "json_schema":
            if form.schema_ is None:
                raise XituiError("text.format.schema: a json_schema format has its schema")
            check_depth(form.schema_, "text.format.schema")
            out["response_format"] = {"type": "json_schema", "json_schema": {
                "name": form.name or "answer", "schema": form.schema_, "strict": form.strict}}
        if self.reasoning is not None and self.reasoning.effort == "none":
            out["chat_template_kwargs"] = {"enable_thinking": False}
        return out

    def echoed(self) -> dict[str, Any]:
        """What a response repeats of its request."""
        return {"instructions": self.instructions, "max_output_tokens": self.max_output_tokens,
                "parallel_tool_calls": self.parallel_tool_calls is not False,
                "temperature": self.temperature, "top_p": self.top_p,
                "tool_choice": self.tool_choice.model_dump() if isinstance(self.tool_choice, NamedChoice)
                else (self.tool_choice or "auto"),
                "tools": [t.model_dump(exclude_none=True) for t in self.tools or []],
                "text": {"format": self.text.format.model_dump(by_alias=True, exclude_none=True)}
                if self.text is not None and self.text.format is not None else {"format": {"type": "text"}},
                "reasoning": self.reasoning.model_dump() if self.reasoning is not None else None,
                "store": False, "previous_response_id": None, "metadata": self.metadata or {}}


# --- what comes back ---------------------------------------------------------------------------------------


def _usage(done: wire.Done | None) -> dict[str, Any] | None:
    if done is None:
        return None
    usage = done["usage"]
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return {"input_tokens": usage["prompt_tokens"], "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": usage["completion_tokens"], "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"]}


def _item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class ResponseWriter:
    """A response's output items as they come (reasoning, a message, function calls) and the events that tell
    of them: the whole response is what the events built."""

    def __init__(self, ident: str, model: str, echoed: dict[str, Any], spaces: dict[str, str] | None = None):
        self.ident, self.model, self.echoed = ident, model, echoed
        #: The namespace of each function in one (namespaces()).
        self.spaces = spaces or {}
        self.created = int(time.time())
        self.output: list[dict[str, Any]] = []
        self.open: str | None = None  # the kind of the item being written: reasoning, message
        self.sequence = 0
        #: white space not yet written (the line breaks between several calls are not a message)
        self.held = ""

    def response(self, status: str, done: wire.Done | None = None, error: dict[str, Any] | None = None,
                 ) -> dict[str, Any]:
        incomplete = {"reason": "max_output_tokens"} if status == "incomplete" else None
        return {"id": self.ident, "object": "response", "created_at": self.created, "status": status,
                "model": self.model, "output": self.output, "usage": _usage(done), "error": error,
                "incomplete_details": incomplete, "user": None, **self.echoed}

    def event(self, name: str, data: dict[str, Any]) -> dict[str, Any]:
        self.sequence += 1
        return {"type": name, "sequence_number": self.sequence - 1, **data}

    def started(self) -> list[dict[str, Any]]:
        return [self.event("response.created", {"response": self.response("in_progress")}),
                self.event("response.in_progress", {"response": self.response("in_progress")})]

    def _close(self, status: str = "completed") -> list[dict[str, Any]]:
        if self.open is None:
            return []
        index = len(self.output) - 1
        item = self.output[index]
        out: list[dict[str, Any]] = []
        if self.open == "message":
            part = item["content"][0]
            out.append(self.event("response.output_text.done", {
                "item_id": item["id"], "output_index": index, "content_index": 0, "text": part["text"],
                "logprobs": []}))
            out.append(self.event("response.content_part.done", {
                "item_id": item["id"], "output_index": index, "content_index": 0, "part": part}))
        else:
            part = item["content"][0]
            out.append(self.event("response.reasoning_text.done", {
                "item_id": item["id"], "output_index": index, "content_index": 0, "text": part["text"]}))
            out.append(self.event("response.content_part.done", {
                "item_id": item["id"], "output_index": index, "content_index": 0, "part": part}))
        item["status"] = status
        out.append(self.event("response.output_item.done", {"output_index": index, "item": item}))
        self.open = None
        return out

    def _begin(self, kind: str) -> list[dict[str, Any]]:
        out = self._close()
        if kind == "message":
            item: dict[str, Any] = {"type": "message", "id": _item_id("msg"), "status": "in_progress",
                                    "role": "assistant", "content": []}
            part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        else:
            item = {"type": "reasoning", "id": _item_id("rs"), "summary": [], "content": [],
                    "status": "in_progress"}
            part = {"type": "reasoning_text", "text": ""}
        self.output.append(item)
        self.open = kind
        index = len(self.output) - 1
        out.append(self.event("response.output_item.added", {"output_index": index, "item": dict(item)}))
        item["content"].append(part)
        out.append(self.event("response.content_part.added", {
            "item_id": item["id"], "output_index": index, "content_index": 0, "part": dict(part)}))
        return out

    def text(self, text: str) -> list[dict[str, Any]]:
        if self.open != "message" and (self.held + text).isspace():
            self.held += text
            return []
        text, self.held = self.held + text, ""
        out = [] if self.open == "message" else self._begin("message")
        return out + self._delta("response.output_text.delta", text)

    def thinking(self, text: str) -> list[dict[str, Any]]:
        out = [] if self.open == "reasoning" else self._begin("reasoning")
        return out + self._delta("response.reasoning_text.delta", text)

    def _delta(self, name: str, text: str) -> list[dict[str, Any]]:
        index = len(self.output) - 1
        item = self.output[index]
        item["content"][0]["text"] += text
        extra: dict[str, Any] = {"logprobs": []} if name == "response.output_text.delta" else {}
        return [self.event(name, {"item_id": item["id"], "output_index": index, "content_index": 0,
                                  "delta": text, **extra})]

    def calls(self, calls: list[wire.ToolCall]) -> list[dict[str, Any]]:
        out = self._close()
        self.held = ""
        for call in calls:
            name = call["function"]["name"]
            item = {"type": "function_call", "id": _item_id("fc"), "call_id": call["id"], "name": name,
                    "arguments": "", "status": "in_progress"}
            if name in self.spaces:
                item["namespace"] = self.spaces[name]
            self.output.append(item)
            index = len(self.output) - 1
            arguments = call["function"]["arguments"]
            out.append(self.event("response.output_item.added", {"output_index": index, "item": dict(item)}))
            out.append(self.event("response.function_call_arguments.delta", {
                "item_id": item["id"], "output_index": index, "delta": arguments}))
            out.append(self.event("response.function_call_arguments.done", {
                "item_id": item["id"], "output_index": index, "name": item["name"], "arguments": arguments}))
            item.update(arguments=arguments, status="completed")
            out.append(self.event("response.output_item.done", {"output_index": index, "item": item}))
        return out

    def end(self, done: wire.Done) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.held and not any(item["type"] == "function_call" for item in self.output):
            out += self._begin("message") + self._delta("response.output_text.delta", self.held)
            self.held = ""
        status = "incomplete" if done["finish_reason"] == "length" else "completed"
        out += self._close(status)  # (an item cut by max_output_tokens is incomplete, as its response is)
        out.append(self.event(f"response.{status}", {"response": self.response(status, done)}))
        return out

    def failed(self, message: str, status: int) -> list[dict[str, Any]]:
        code = "server_error" if status >= 500 else "invalid_request_error"
        error = {"code": code, "message": message}
        return [self.event("error", {"code": code, "message": message, "param": None}),
                self.event("response.failed", {"response": self.response("failed", error=error)})]


def _sse(event: dict[str, Any]) -> bytes:
    import orjson

    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


async def respond_responses(request: Any, stream: Any, model: str, streamed: bool, echoed: dict[str, Any],
                            spaces: dict[str, str]) -> Any:
    """A chat generation's wire messages (text, reasoning, tool_calls, done) as a response, whole or as its
    events. An error before the first piece is the request's 4xx/5xx; a later one is an error event and
    response.failed. A client that hangs up before its answer cancels the generation."""
    import orjson
    from starlette.responses import Response, StreamingResponse

    from xitui.server.api.generation import whole_or_first

    writer = ResponseWriter(_item_id("resp"), model, echoed, spaces)

    def feed(msg: wire.Answer) -> list[dict[str, Any]]:
        if msg["kind"] == "text":
            return writer.text(msg["text"])
        if msg["kind"] == "reasoning":
            return writer.thinking(msg["text"])
        if msg["kind"] == "tool_calls":
            return writer.calls(msg["calls"])
        if msg["kind"] == "done":
            return writer.end(msg)
        return []

    got = await whole_or_first(request, stream, streamed)
    if got is None:
        return Response(status_code=499)
    if not streamed:
        last: list[dict[str, Any]] = []
        for msg in got:
            last = feed(msg)
        if not last or last[-1]["type"] not in ("response.completed", "response.incomplete"):
            raise XituiError("the generation ended without an answer")
        return Response(orjson.dumps(last[-1]["response"]), media_type="application/json")
    first = got[0]

    async def events() -> Any:
        try:
            for event in writer.started():
                yield _sse(event)
            msg = first
            while True:
                for event in feed(msg):
                    yield _sse(event)
                if msg["kind"] == "done":
                    return
                msg = await stream.__anext__()
        except XituiError as exc:
            for event in writer.failed(str(exc), exc.status_code):
                yield _sse(event)
        except StopAsyncIteration:
            for event in writer.failed("the generation ended without an answer", 500):
                yield _sse(event)
        finally:
            await stream.aclose()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
