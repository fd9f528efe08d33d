"""A chat request with tools, in the worker: the conversation as the model's chat format takes it, the
grammar of a forced call, and the reader that takes the calls out of the answer (core/tool_calls.py)."""

from __future__ import annotations

from typing import Any

from xitui.backends.base import GenerateParams, RequestError
from xitui.core import tool_calls
from xitui.core.errors import XituiError


def template_in_use(family: Any, model_template: str | None) -> str | None:
    """The Jinja template a conversation is rendered with (None: a prompt style renders it)."""
    if family.chat_template:
        return family.chat_template
    return None if family.prompt_style is not None else model_template


def tool_format(family: Any, model_template: str | None) -> str:
    return tool_calls.detect(template_in_use(family, model_template), family.tool_parser)


def prepare(req: dict[str, Any], messages: list[dict[str, Any]], family: Any, model_template: str | None,
            backend: Any, params: GenerateParams) -> tuple[list[dict[str, Any]], dict[str, Any],
                                                           tool_calls.CallReader | None]:
    """(messages for the chat format, extra template variables, the reader of calls or None).

    A template that renders tools gets them (and the calls and results in the messages) as they are;
    otherwise the tools go in the system prompt and calls and results become text (tool_calls.plain_messages).
    A forced call (`required`, a named function) is held to its schema by a grammar."""
    tools = req.get("tools") or None
    choice = req.get("tool_choice") or "auto"
    fmt = tool_format(family, model_template)
    template = template_in_use(family, model_template)
    takes = tool_calls.template_takes_tools(template)
    history_has_tools = any(m.get("tool_calls") or m["role"] == "tool" for m in messages)
    if not tools or choice == "none":
        if history_has_tools and not takes:
            messages = tool_calls.plain_messages(messages, None, fmt)
        return messages, {}, None
    extra: dict[str, Any] = {}
    if takes:
        extra["tools"] = tools
    else:
        messages = tool_calls.plain_messages(messages, tools, fmt)
    try:
        forced = tool_calls.chosen_tools(tools, choice)
    except XituiError as exc:
        raise RequestError(str(exc)) from None
    if forced:
        if params.constraint:
            raise RequestError("response_format: a forced tool call has its own form; leave one of them out")
        try:
            call = backend.grammar_for({"json_schema": tool_calls.call_schema(forced, fmt)})
            several = bool(req.get("parallel_tool_calls")) and choice == "required"
            params.grammar = backend.grammar_for({"gbnf": tool_calls.call_grammar(call, fmt, several)})
        except RequestError as exc:
            raise RequestError(f"tool_choice: a forced call needs a grammar: {exc}") from None
    return messages, extra, tool_calls.CallReader(fmt)
