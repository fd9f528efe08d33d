"""Anthropic's Messages API (`POST /v1/messages`), as Claude Code and the anthropic SDK send it, read into the
chat request the rest of the server already serves (bodies.ChatBody): system, turns of text, image, tool_use,
tool_result and thinking blocks, tools and tool_choice. What comes back is written in Anthropic's shapes
(a message, or its stream of events) from the same wire messages as chat completions.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from xitui import wire
from xitui.core.chat_format.input_size import check_depth
from xitui.core.errors import XituiError
from xitui.server.api.bodies import MAX_DESCRIPTION

#: Anthropic's stop reasons for the engines' finish reasons.
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}

#: Fields Claude Code and the SDK send that do not change what a local model writes: accepted, not acted on.
IGNORED = ("metadata", "context_management", "service_tier", "container", "mcp_servers", "betas")


class Part(BaseModel):
    """A block inside a tool result or the system prompt: text (or an image, refused where it is not read).
    Not a Block: a block in a block in a block... is not Anthropic's, and not a depth to walk."""

    model_config = ConfigDict(extra="allow")
    type: Annotated[str, Field(max_length=32)]
    text: str | None = None


class Block(BaseModel):
    """One content block of a message (text, image, tool_use, tool_result, thinking, redacted_thinking)."""

    model_config = ConfigDict(extra="allow")
    type: Annotated[str, Field(max_length=32)]
    text: str | None = None
    #: image: {"type": "base64", "media_type", "data"} or {"type": "url", "url"}
    source: dict[str, Any] | None = None
    #: tool_use
    id: Annotated[str, Field(max_length=256)] | None = None
    name: Annotated[str, Field(max_length=64)] | None = None
    input: Any = None
    #: tool_result
    tool_use_id: Annotated[str, Field(max_length=256)] | None = None
    content: str | Annotated[list[Part], Field(max_length=1000)] | None = None
    is_error: bool | None = None
    #: thinking
    thinking: str | None = None


class AnthropicMessage(BaseModel):
    """One turn: the user's or the assistant's, text or blocks."""

    model_config = ConfigDict(extra="ignore")
    #: system: a turn of instructions amid the conversation (Claude Code 2.1's "mid-conversation-system" beta)
    role: Literal["user", "assistant", "system"]
    content: str | Annotated[list[Block], Field(max_length=1000)]


class AnthropicTool(BaseModel):
    """A tool the model may use: its name, what it does, the JSON schema of its input."""

    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    description: Annotated[str, Field(max_length=MAX_DESCRIPTION)] | None = None
    input_schema: dict[str, Any] | None = None
    #: server tools (web_search...) have a type other than "custom"
    type: Annotated[str, Field(max_length=64)] | None = None


class ToolChoice(BaseModel):
    """auto, any (some tool), tool (that one, by name) or none."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["auto", "any", "tool", "none"]
    name: Annotated[str, Field(max_length=64)] | None = None
    disable_parallel_tool_use: bool | None = None


def _image_part(block: Block, where: str) -> dict[str, Any]:
    """An image block as OpenAI's image_url part (a data URL; a URL as it is, for the server's fetch rules)."""
    source = block.source or {}
    if source.get("type") == "base64":
        media, data = source.get("media_type"), source.get("data")
        if not isinstance(media, str) or not isinstance(data, str):
            raise XituiError(f"{where}.source: media_type and data are required for a base64 image")
        return {"type": "image_url", "image_url": {"url": f"data:{media};base64,{data}"}}
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return {"type": "image_url", "image_url": {"url": source["url"]}}
    raise XituiError(f"{where}.source: an image is base64 data or a url")


def _text_of(content: str | list[Part] | None, where: str, whose: str = "a tool result's") -> str:
    """A tool result's content (or a system prompt's) as text: its text blocks joined; images are not read."""
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for i, block in enumerate(content):
        if block.type != "text":
            raise XituiError(f"{where}[{i}]: {whose} {block.type!r} blocks are not read (text only)")
        texts.append(block.text or "")
    return "".join(texts)


def chat_messages(system: str | list[Part] | None, messages: list[AnthropicMessage]) -> list[dict[str, Any]]:
    """The conversation in OpenAI's chat shape: the system first; a user turn's tool results as `tool`
    messages (in order, before the turn's other blocks); an assistant turn's text and tool_use blocks as one
    message with its tool_calls; thinking blocks dropped (a local model does not read its earlier thoughts)."""
    import json

    out: list[dict[str, Any]] = []
    instructions = [_text_of(system, "system", "a system prompt's")] if system else []
    for m, message in enumerate(messages):
        where = f"messages[{m}].content"
        if message.role == "system":
            # joined to the system prompt, where every chat template takes one (many refuse it later on)
            instructions.append(message.content if isinstance(message.content, str) else _text_of(
                [Part.model_validate(b.model_dump()) for b in message.content], where, "a system turn's"))
            continue
        if isinstance(message.content, str):
            out.append({"role": message.role, "content": message.content})
            continue
        parts: list[dict[str, Any]] = []
        calls: list[dict[str, Any]] = []
        for i, block in enumerate(message.content):
            here = f"{where}[{i}]"
            if block.type == "text":
                parts.append({"type": "text", "text": block.text or ""})
            elif block.type == "image" and message.role == "user":
                parts.append(_image_part(block, here))
            elif block.type == "tool_use" and message.role == "assistant":
                if not block.id or not block.name:
                    raise XituiError(f"{here}: a tool_use block has an id and a name")
                check_depth(block.input, f"{here}.input")
                calls.append({"id": block.id, "type": "function", "function": {
                    "name": block.name, "arguments": json.dumps(block.input if block.input is not None else {})}})
            elif block.type == "tool_result" and message.role == "user":
                if not block.tool_use_id:
                    raise XituiError(f"{here}: a tool_result block has a tool_use_id")
                text = _text_of(block.content, f"{here}.content")
                out.append({"role": "tool", "tool_call_id": block.tool_use_id,
                            "content": f"(error) {text}" if block.is_error else text})
            elif block.type in ("thinking", "redacted_thinking") and message.role == "assistant":
                continue
            else:
                raise XituiError(f"{here}: {block.type!r} blocks are not read in a {message.role} turn")
        if calls:
            text = "".join(p.get("text", "") for p in parts if p["type"] == "text")
            out.append({"role": "assistant", "content": text or None, "tool_calls": calls})
        elif parts:
            only_text = all(p["type"] == "text" for p in parts)
            out.append({"role": message.role,
                        "content": "\n".join(p["text"] for p in parts) if only_text else parts})
    if instructions:
        out.insert(0, {"role": "system", "content": "\n\n".join(instructions)})
    return out


def chat_tools(tools: list[AnthropicTool] | None, choice: ToolChoice | None) -> dict[str, Any]:
    """`tools`, `tool_choice` and `parallel_tool_calls` of the chat request."""
    if not tools:
        if choice is not None and choice.type in ("any", "tool"):
            raise XituiError(f"tool_choice: {choice.type!r} needs tools")
        return {}
    for i, tool in enumerate(tools):
        if tool.type not in (None, "custom"):
            raise XituiError(f"tools[{i}]: Anthropic's server tools ({tool.type}) are not served here")
        check_depth(tool.input_schema, f"tools[{i}].input_schema")
        if any(other.name == tool.name for other in tools[:i]):
            raise XituiError(f"tools[{i}].name: two tools are named {tool.name!r}")
    out: dict[str, Any] = {"tools": [{"type": "function", "function": {
        "name": t.name, "description": t.description, "parameters": t.input_schema or {"type": "object"}}}
        for t in tools]}
    if choice is not None:
        if choice.type == "tool":
            if not choice.name:
                raise XituiError("tool_choice.name: required when the type is 'tool'")
            out["tool_choice"] = {"type": "function", "function": {"name": choice.name}}
        else:
            out["tool_choice"] = {"any": "required"}.get(choice.type, choice.type)
        out["parallel_tool_calls"] = not choice.disable_parallel_tool_use
    return out


class MessagesBody(BaseModel):
    """POST /v1/messages: Anthropic's request. Fields that do not change what a local model writes (metadata,
    context_management, output_config's effort where the model has no levels...) are accepted and left."""

    model_config = ConfigDict(extra="allow")
    model: Annotated[str, Field(max_length=200)]
    max_tokens: Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)]
    messages: Annotated[list[AnthropicMessage], Field(min_length=1, max_length=10_000)]
    system: str | Annotated[list[Part], Field(max_length=1000)] | None = None
    stop_sequences: Annotated[list[Annotated[str, Field(min_length=1, max_length=256)]],
                              Field(max_length=16)] | None = None
    temperature: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = None
    top_k: Annotated[int, Field(ge=0, le=2**31 - 1, strict=True)] | None = None
    stream: Annotated[bool, Field(strict=True)] = False
    tools: Annotated[list[AnthropicTool], Field(max_length=128)] | None = None
    tool_choice: ToolChoice | None = None
    #: {"type": "enabled", "budget_tokens"}, "disabled" or "adaptive": a model that reasons does; one that
    #: does not ignores it (Claude Code sends "adaptive" to every model)
    thinking: dict[str, Any] | None = None
    #: Anthropic's structured output: {"type": "json_schema", "schema": {...}}, as `output_format` (its beta)
    #: or `output_config.format`; held as response_format's json_schema is
    output_format: dict[str, Any] | None = None
    output_config: dict[str, Any] | None = None

    def chat_dict(self) -> dict[str, Any]:
        """The chat completions request this asks for (bodies.ChatBody reads and checks it)."""
        out: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "stream": self.stream,
                               "messages": chat_messages(self.system, self.messages),
                               **chat_tools(self.tools, self.tool_choice)}
        for key in ("temperature", "top_p", "top_k"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.stop_sequences:
            out["stop"] = self.stop_sequences
        if isinstance(self.thinking, dict) and self.thinking.get("type") == "disabled":
            out["chat_template_kwargs"] = {"enable_thinking": False}
        form = self.output_format
        where = "output_format"
        if form is None and self.output_config is not None and "format" in self.output_config:
            form, where = self.output_config["format"], "output_config.format"
        if form is not None:
            schema = form.get("schema") if isinstance(form, dict) and form.get("type") == "json_schema" else None
            if not isinstance(schema, dict):
                raise XituiError(f'{where}: served as {{"type": "json_schema", "schema": {{...}}}}')
            check_depth(schema, f"{where}.schema")
            out["response_format"] = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
        return out


class CountTokensBody(MessagesBody):
    """POST /v1/messages/count_tokens: a Messages request without max_tokens, counted and not answered."""

    max_tokens: Annotated[int, Field(ge=1, le=2**31 - 1, strict=True)] = 1


# --- what comes back ---------------------------------------------------------------------------------------


def _input_of(arguments: str) -> Any:
    """A call's arguments as the tool_use block's `input` (an object; text that is not one, as it came)."""
    import json

    try:
        value = json.loads(arguments)
    except ValueError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_value": value}


def tool_use_id(call_id: str) -> str:
    """Anthropic's id for a call (its SDK and Claude Code expect `toolu_`): the engine's own, renamed."""
    return "toolu_" + call_id.removeprefix("call_")


def stop_of(done: wire.Done, called: bool, sequences: list[str]) -> tuple[str, str | None]:
    """Anthropic's stop_reason and stop_sequence for an answer's end: one of the request's stop_sequences is
    named; a stop word of the model's own (its end of turn) is end_turn."""
    word = done.get("stop_word")
    if called and done["finish_reason"] != "length":  # (calls, then the answer cut: it says it was cut)
        return "tool_use", None
    if done["finish_reason"] == "stop" and word in sequences:
        return "stop_sequence", word
    return STOP_REASONS.get(done["finish_reason"], "end_turn"), None


def usage_of(done: wire.Done) -> dict[str, int]:
    return {"input_tokens": done["usage"]["prompt_tokens"], "output_tokens": done["usage"]["completion_tokens"]}


def message(ident: str, model: str, text: str, reasoning: str | None, calls: list[wire.ToolCall],
            done: wire.Done, sequences: list[str]) -> dict[str, Any]:
    """A whole answer as Anthropic's message."""
    content: list[dict[str, Any]] = []
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    if text and not (calls and text.isspace()):  # (the line breaks between calls are not a text block)
        content.append({"type": "text", "text": text})
    for call in calls:
        content.append({"type": "tool_use", "id": tool_use_id(call["id"]), "name": call["function"]["name"],
                        "input": _input_of(call["function"]["arguments"])})
    reason, sequence = stop_of(done, bool(calls), sequences)
    return {"id": ident, "type": "message", "role": "assistant", "model": model, "content": content,
            "stop_reason": reason, "stop_sequence": sequence, "usage": usage_of(done)}


class MessageEvents:
    """A streamed answer as Anthropic's events: message_start, then content blocks (each a start, its deltas
    and a stop; text, thinking, tool_use), message_delta with the stop reason and usage, message_stop."""

    def __init__(self, ident: str, model: str):
        self.ident, self.model = ident, model
        self.index = -1
        self.open: str | None = None  # the kind of the block being written
        #: white space not yet written: it opens no text block of its own until text follows it (the line
        #: breaks between several calls are not a block)
        self.held = ""

    @staticmethod
    def event(name: str, data: dict[str, Any]) -> bytes:
        import orjson

        return b"event: " + name.encode() + b"\ndata: " + orjson.dumps({"type": name, **data}) + b"\n\n"

    def start(self, input_tokens: int = 0) -> bytes:
        return self.event("message_start", {"message": {
            "id": self.ident, "type": "message", "role": "assistant", "model": self.model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": input_tokens, "output_tokens": 0}}})

    def _close(self) -> list[bytes]:
        if self.open is None:
            return []
        out = []
        if self.open == "thinking":  # (Claude Code reads a signature on every thinking block)
            out.append(self.event("content_block_delta", {"index": self.index, "delta": {
                "type": "signature_delta", "signature": ""}}))
        out.append(self.event("content_block_stop", {"index": self.index}))
        self.open = None
        return out

    def _begin(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.index += 1
        self.open = kind
        out.append(self.event("content_block_start", {"index": self.index, "content_block": block}))
        return out

    def text(self, text: str) -> list[bytes]:
        if self.open != "text" and (self.held + text).isspace():
            self.held += text
            return []
        text, self.held = self.held + text, ""
        out = [] if self.open == "text" else self._begin("text", {"type": "text", "text": ""})
        out.append(self._text_delta(text))
        return out

    def _text_delta(self, text: str) -> bytes:
        return self.event("content_block_delta", {"index": self.index, "delta": {"type": "text_delta", "text": text}})

    def thinking(self, text: str) -> list[bytes]:
        out = [] if self.open == "thinking" else self._begin("thinking", {"type": "thinking", "thinking": ""})
        out.append(self.event("content_block_delta", {"index": self.index, "delta": {"type": "thinking_delta",
                                                                                     "thinking": text}}))
        return out

    def calls(self, calls: list[wire.ToolCall]) -> list[bytes]:
        out: list[bytes] = []
        self.held = ""
        for call in calls:
            out += self._begin("tool_use", {"type": "tool_use", "id": tool_use_id(call["id"]),
                                            "name": call["function"]["name"], "input": {}})
            out.append(self.event("content_block_delta", {"index": self.index, "delta": {
                "type": "input_json_delta", "partial_json": call["function"]["arguments"]}}))
            out += self._close()
        return out

    def end(self, done: wire.Done, called: bool, sequences: list[str]) -> list[bytes]:
        out: list[bytes] = []
        if self.held and not called:  # an answer of white space alone is still the answer
            out += self._begin("text", {"type": "text", "text": ""})
            out.append(self._text_delta(self.held))
        out += self._close()
        reason, sequence = stop_of(done, called, sequences)
        out.append(self.event("message_delta", {"delta": {"stop_reason": reason, "stop_sequence": sequence},
                                                "usage": usage_of(done)}))
        out.append(self.event("message_stop", {}))
        return out

    def error(self, message: str, status: int) -> bytes:
        kind = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}.get(status, "api_error")
        return self.event("error", {"error": {"type": kind, "message": message}})


async def respond_messages(request: Any, stream: Any, model: str, streamed: bool, sequences: list[str]) -> Any:
    """A chat generation's wire messages (text, reasoning, tool_calls, done) as Anthropic's message, whole or
    as its events. An error before the first piece is the request's 4xx/5xx; a later one is an `error` event.
    A client that hangs up before its answer cancels the generation."""
    import uuid

    import orjson
    from starlette.responses import Response, StreamingResponse

    from xitui.server.api.generation import whole_or_first

    ident = "msg_" + uuid.uuid4().hex
    got = await whole_or_first(request, stream, streamed)
    counted = 0
    if got and got[0]["kind"] == "counted":  # (a stream's: its message_start names the prompt's tokens)
        counted = got[0]["prompt_tokens"]
        got = await whole_or_first(request, stream, streamed)
    if got is None:
        return Response(status_code=499)
    if not streamed:
        pieces, thought, calls = [], [], []
        done = None
        for msg in got:
            if msg["kind"] == "text":
                pieces.append(msg["text"])
            elif msg["kind"] == "reasoning":
                thought.append(msg["text"])
            elif msg["kind"] == "tool_calls":
                calls += msg["calls"]
            elif msg["kind"] == "done":
                done = msg
        if done is None:
            raise XituiError("the generation ended without an answer")
        return Response(orjson.dumps(message(ident, model, "".join(pieces), "".join(thought) or None, calls, done,
                                             sequences)), media_type="application/json")
    first = got[0]
    writer = MessageEvents(ident, model)

    async def events() -> Any:
        called = False
        yield writer.start(counted)
        try:
            msg = first
            while True:
                if msg["kind"] == "text":
                    for data in writer.text(msg["text"]):
                        yield data
                elif msg["kind"] == "reasoning":
                    for data in writer.thinking(msg["text"]):
                        yield data
                elif msg["kind"] == "tool_calls":
                    called = True
                    for data in writer.calls(msg["calls"]):
                        yield data
                elif msg["kind"] == "done":
                    for data in writer.end(msg, called, sequences):
                        yield data
                    return
                msg = await stream.__anext__()
        except XituiError as exc:
            yield writer.error(str(exc), exc.status_code)
        except StopAsyncIteration:
            yield writer.error("the generation ended without an answer", 500)
        finally:
            await stream.aclose()

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
