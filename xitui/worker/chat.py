"""Turning chat messages into a prompt: the spec's template or style first, then the model's own."""

from __future__ import annotations

from typing import Any

from xitui.backends.base import RequestError
from xitui.core.prompts import ChatTemplateError, PromptError, chat_format, conversation_prompt
from xitui.core.spec import LLMFamily

__all__ = ["chat_format", "chat_prompt", "validate_messages"]


def validate_messages(messages: Any) -> list[dict[str, Any]]:
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages: must be a non-empty list of {role, content} objects")
    for i, msg in enumerate(messages):
        if not isinstance(msg, dict) or not isinstance(msg.get("role"), str):
            raise RequestError(f"messages[{i}]: must be an object with a role and a content")
        if msg["role"] not in ("system", "user", "assistant", "tool"):
            raise RequestError(f"messages[{i}].role: {msg['role']!r} is not system, user or assistant")
        content = msg.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            texts = [p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text"]
            msg = {**msg, "content": "".join(texts)}
            messages[i] = msg
        elif not isinstance(content, str):
            raise RequestError(f"messages[{i}].content: must be a string")
    return messages


def chat_prompt(
    family: LLMFamily, model_template: str | None, messages: list[dict[str, Any]], bos: str, eos: str,
    **extra: Any,
) -> str:
    """The prompt text for a conversation, ending where the assistant speaks next (`extra`: more template
    variables, such as the tools)."""
    try:
        return conversation_prompt(family, model_template, messages, bos, eos, **extra)
    except (PromptError, ChatTemplateError) as exc:
        raise RequestError(str(exc)) from None
