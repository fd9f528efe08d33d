"""A chat request with tools, in the worker: the conversation as the model's chat format takes it, the
grammar of a forced call, and the reader that takes the calls out of the answer (core/chat_format/tool_calls.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Any

from xitui import wire
from xitui.backends.base import Backend, GenerateParams, RequestError
from xitui.core.chat_format import tool_calls
from xitui.core.chat_format.reasoning import DEFAULT_TAGS, ThoughtReader
from xitui.core.errors import XituiError
from xitui.core.specs.spec import LLMFamily


def template_in_use(family: LLMFamily, model_template: str | None) -> str | None:
    """The Jinja template a conversation is rendered with (None: a prompt style renders it)."""
    if family.chat_template:
        return family.chat_template
    if family.prompt_style is not None:
        return None
    return model_template  # (or, without one, the family's prompt style)


def tool_format(family: LLMFamily, model_template: str | None) -> str:
    """The syntax this model writes calls in; a RequestError for a tool parser xitui does not read."""
    try:
        return tool_calls.detect(template_in_use(family, model_template), family.tool_parser)
    except XituiError as exc:
        raise RequestError(str(exc)) from None


def prepare(req: wire.ChatRequest, family: LLMFamily, model_template: str | None, backend: Backend,
            params: GenerateParams) -> tuple[Sequence[Mapping[str, Any]], dict[str, Any], tool_calls.CallReader | None]:
    """(messages for the chat format, extra template variables, the reader of calls or None).

    A template that renders tools gets them (and the calls and results in the messages) as they are;
    otherwise the tools go in the system prompt and calls and results become text (tool_calls.plain_messages).
    A forced call (`required`, a named function) is held to its schema by a grammar."""
    messages = req["messages"]
    tools = req.get("tools") or None
    choice = req.get("tool_choice") or "auto"
    template = template_in_use(family, model_template)
    takes = tool_calls.template_takes_tools(template)
    history_has_tools = any(m.get("tool_calls") or m["role"] == "tool" for m in messages)
    if not tools or choice == "none":
        if not history_has_tools:
            return messages, {}, None
        if takes:
            return tool_calls.template_messages(messages), {}, None
        return tool_calls.plain_messages(messages, None, tool_format(family, model_template)), {}, None
    fmt = tool_format(family, model_template)
    extra: dict[str, Any] = {}
    if takes:
        extra["tools"] = tools
        rendered = tool_calls.template_messages(messages)
    else:
        rendered = tool_calls.plain_messages(messages, tools, fmt)
    try:
        forced = tool_calls.chosen_tools(tools, choice)
    except XituiError as exc:
        raise RequestError(str(exc)) from None
    if forced:
        if params.constraint and "gbnf" in params.constraint:
            raise RequestError("grammar: a forced tool call has its own grammar; leave one of them out")
        # the call is the whole answer: no text is left for a response_format to hold (instructor's Responses
        # mode sends both, the format being the call's own schema; OpenAI answers with the call)
        params.constraint = None
        several = bool(req.get("parallel_tool_calls")) and choice == "required"
        try:
            params.grammar = backend.grammar_for({"tool_call": {
                "schema": tool_calls.call_schema(forced, fmt), "format": fmt, "several": several}})
        except RequestError as exc:
            raise RequestError(f"tool_choice: a forced call needs a grammar: {exc}") from None
    elif choice == "auto" and not params.constraint and fmt in tool_calls.TRIGGERS and backend.lazy_grammars:
        # once the model opens a call, the call is held to the tools' schemas; a schema no grammar can hold
        # leaves the calls free, as before (an `auto` request is not refused for what it may never call)
        with contextlib.suppress(RequestError):
            params.grammar = backend.grammar_for({"tool_call": {
                "schema": tool_calls.call_schema(tools, fmt), "format": fmt, "several": False,
                "after_trigger": True}})
            params.trigger = tool_calls.TRIGGERS[fmt]
    # a call to a function the request did not offer is not a call the client can make: it stays text
    offered = frozenset(str((t.get("function") or {}).get("name")) for t in tools)
    return rendered, extra, tool_calls.CallReader(fmt, offered=offered)


class AnswerSplit:
    """An answer's text split for the response as it streams: a thinking model's reasoning apart
    (core/chat_format/reasoning.py), then the tool calls out of what is left (core/chat_format/tool_calls.py)."""

    def __init__(self, rid: int, thoughts: ThoughtReader | None, calls: tool_calls.CallReader | None):
        self.rid = rid
        self.thoughts = thoughts
        self.calls = calls

    @property
    def called(self) -> bool:
        return bool(self.calls and self.calls.calls)

    def feed(self, text: str) -> list[wire.Piece]:
        """The messages this piece of text makes: reasoning, text, tool calls."""
        reasoning = ""
        if self.thoughts is not None:
            text, reasoning = self.thoughts.feed(text)
        return self._messages(text, reasoning, final=False)

    def finish(self) -> list[wire.Piece]:
        text, reasoning = self.thoughts.finish() if self.thoughts is not None else ("", "")
        return self._messages(text, reasoning, final=True)

    def _messages(self, text: str, reasoning: str, final: bool) -> list[wire.Piece]:
        out: list[wire.Piece] = []
        if reasoning:
            out.append({"kind": "reasoning", "id": self.rid, "text": reasoning})
        found: list[wire.ToolCall] = []
        if self.calls is not None:
            text, found = self.calls.feed(text)
            if final:
                rest, more = self.calls.finish()
                text, found = text + rest, found + more
        if text:
            out.append(wire.text(self.rid, text))
        if found:
            out.append({"kind": "tool_calls", "id": self.rid, "calls": found})
        return out


def thought_reader(family: LLMFamily, prompt: str) -> ThoughtReader | None:
    """For a model with the reasoning ability: its tags, and whether the prompt already opened a thought."""
    if "reasoning" not in family.model_ability:
        return None
    start = family.reasoning_start_tag or DEFAULT_TAGS[0]
    end = family.reasoning_end_tag or DEFAULT_TAGS[1]
    return ThoughtReader(start, end, thinking=prompt.rstrip().endswith(start))
