"""What a generation or rerank request hands its model, prepared and held to one size rule (core/input_size)
on the server, before a worker tokenizes any of it: a chat's messages, earlier calls' arguments, tool results,
tools and template variables are counted together against the model's context; rerank texts are cut to what
the model reads. Nested values are checked for depth before anything serializes them.

Preparing a chat with tools or a schema is work that grows with what the request sends (schemas checked
keyword by keyword, tools serialized): the routes run it off the event loop (`needs_thread`)."""

from __future__ import annotations

import secrets
from typing import cast

import orjson
from pydantic import BaseModel

from xitui import wire
from xitui.core.chat_format.input_size import MAX_DEPTH, InputCount, check_depth, cut
from xitui.core.errors import XituiError
from xitui.server.api.bodies import ChatBody, GenerationBody
from xitui.server.api.structured import template_kwargs
from xitui.server.edge.json_body import nested_deeper_than
from xitui.server.runtime.model import Model

#: A request's tools together, as JSON: 128 tools with ample schemas fit; more is not a request but a load.
MAX_TOOLS_BYTES = 256 * 1024


def context_of(model: Model) -> int:
    """Tokens the model reads: its context (a rerank or embedding model's max_tokens)."""
    info = model.replicas[0].info if model.replicas else {}
    return int(info.get("context_length") or model.plan.context_length or 2048)


def check_prompt(model: Model, prompt: str) -> None:
    """Refuse a completion prompt that cannot fit the model's context, before its worker tokenizes it (a
    15 MiB prompt took the worker half a minute, a half minute every other request to that model waited)."""
    count = InputCount()
    count.add("prompt", len(prompt))
    count.check(context_of(model), "prompt")


def needs_thread(body: GenerationBody) -> bool:
    """Whether preparing the request is work for a thread (tools, a schema, a grammar, a long conversation)
    rather than a few lookups on the event loop."""
    if body.response_format is not None or body.grammar is not None:
        return True
    if isinstance(body, ChatBody):
        return (bool(body.tools) or len(body.messages) > 64
                or any(isinstance(m.content, list) and any(p.type in ("image_url", "input_audio") for p in m.content)
                       for m in body.messages) or "chat_template_kwargs" in (body.model_extra or {})
                or any(m.tool_calls for m in body.messages))
    return False


def chat_input(body: ChatBody, model: Model) -> wire.ChatRequest:
    """What the worker gets of a chat request (its parameters are each choice's: `params` is empty): the
    messages, the tools and the template variables; one line (a 400) for what cannot be served or cannot fit."""
    context = context_of(model)
    messages: list[wire.ChatMessage] = []
    count = InputCount()
    reads = model.reads
    images: list[str] | None = [] if reads else None
    marker = f"<image:{secrets.token_hex(8)}>"
    for i, message in enumerate(body.messages):
        try:
            forwarded = message.forwarded(images, marker, reads)
        except XituiError as exc:
            raise XituiError(f"messages[{i}].{exc}") from None
        messages.append(forwarded)
        count.add("messages", len(forwarded["content"]))
        for call in forwarded.get("tool_calls") or ():
            function = call["function"]
            count.add("tool calls' arguments", len(function["name"]) + len(function["arguments"]))
    count.check(context, "messages")  # before anything below reads them
    for i, sent in enumerate(messages):
        for k, call in enumerate(sent.get("tool_calls") or ()):
            _check_arguments(call["function"]["arguments"], f"messages[{i}].tool_calls[{k}].function.arguments")
    request: wire.ChatRequest = {"kind": "chat", "id": 0, "messages": messages, "params": {}}
    if images:
        request["images"], request["image_marker"] = images, marker
    kwargs = template_kwargs((body.model_extra or {}).get("chat_template_kwargs"))
    if kwargs:
        count.add("chat_template_kwargs", len(orjson.dumps(kwargs)))
        request["template_kwargs"] = kwargs
    tools_chars = tool_request(body, model, request)
    count.add("tools", tools_chars)
    count.check(context, "request")
    if request.get("tool_choice") not in (None, "none", "auto"):
        _check_forced(body)  # the costly part last: only for a request that fits
    return request


def _check_arguments(arguments: str, where: str) -> None:
    """An earlier call's arguments are parsed by the worker (a template reads them as an object): nested at
    most MAX_DEPTH levels, whether they are JSON or not."""
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        if nested_deeper_than(arguments, MAX_DEPTH):
            raise XituiError(f"{where}: nested deeper than {MAX_DEPTH} levels") from None
        return
    check_depth(value, where)


def tool_request(body: ChatBody, model: Model, request: wire.ChatRequest) -> int:
    """Put what the worker gets of a request's tools in `request`; their length as JSON. One line for what
    cannot be served. Each tool's parameters are checked for depth before anything serializes them, and all
    of them together are held to MAX_TOOLS_BYTES."""
    choice = body.tool_choice.model_dump() if isinstance(body.tool_choice, BaseModel) else body.tool_choice
    if not body.tools:
        if choice not in (None, "none", "auto"):
            raise XituiError("tool_choice: needs tools to choose from")
        return 0
    for i, tool in enumerate(body.tools):
        if tool.function.parameters:
            check_depth(tool.function.parameters, f"tools[{i}].function.parameters")
    tools = [cast(wire.Tool, t.model_dump()) for t in body.tools]  # the model has the wire type's fields
    size = len(orjson.dumps(tools))
    if size > MAX_TOOLS_BYTES:
        raise XituiError(f"tools: {len(tools)} tools take {size} bytes as JSON; a request's tools may take at most "
                         f"{MAX_TOOLS_BYTES // 1024} KiB together")
    request["tools"] = tools
    if choice == "none":
        request["tool_choice"] = "none"
        return size
    abilities = model.plan.registration.get("model_ability", [])
    if "tools" not in abilities:
        raise XituiError(f"tools: model {body.model!r} does not call tools (its abilities: {', '.join(abilities)}; "
                         "a spec whose model can says \"tools\" in model_ability)")
    request["tool_choice"] = choice or "auto"
    request["parallel_tool_calls"] = bool(body.parallel_tool_calls)
    return size


def _check_forced(body: ChatBody) -> None:
    """A forced call is held to its schema by a grammar: each tool's schema must be one a grammar enforces."""
    from xitui.core.chat_format.json_schema import check_schema, object_schema

    for i, tool in enumerate(body.tools or ()):
        if tool.function.parameters:
            where = f"tools[{i}].function.parameters"
            check_schema(tool.function.parameters, where)
            if not object_schema(tool.function.parameters):
                raise XituiError(f"{where}: a tool's arguments are an object: its parameters' type is object")


def rerank_texts(model: Model, query: str, documents: list[str]) -> tuple[str, list[str]]:
    """The query and documents as far as the rerank model can read them (its max_tokens, in characters):
    what the worker gets, so no long text is sent to it, let alone tokenized whole (the worker cuts again,
    to the token)."""
    tokens = context_of(model)
    return cut(query, tokens), [cut(d, tokens) for d in documents]

