"""Turning chat messages into a prompt: the spec's template or style first, then the model's own."""

from __future__ import annotations

from typing import Any

from xitui.backends.base import RequestError
from xitui.core.prompts import ChatTemplateError, PromptError, render_chat_template, render_prompt
from xitui.core.spec import LLMFamily


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
    family: LLMFamily, model_template: str | None, messages: list[dict[str, Any]], bos: str, eos: str
) -> str:
    """The prompt text for a conversation, ending where the assistant speaks next."""
    try:
        if family.chat_template:
            return render_chat_template(family.chat_template, messages, bos_token=bos, eos_token=eos)
        if family.prompt_style is not None:
            return render_prompt(family.prompt_style, messages)
        if model_template:
            return render_chat_template(model_template, messages, bos_token=bos, eos_token=eos)
    except (PromptError, ChatTemplateError) as exc:
        raise RequestError(str(exc)) from None
    raise RequestError(
        f"model {family.model_name!r} has no chat format: add \"prompt_style\" (see `xitui styles`) "
        "or \"chat_template\" to its spec"
    )


def chat_format(family: LLMFamily, model_template: str | None) -> str | None:
    """Which chat format a model's conversations will use, in words (None: it cannot chat)."""
    if family.chat_template:
        return "the spec's chat_template"
    if family.prompt_style is not None:
        return f"prompt style {family.prompt_style.style_name}"
    if model_template:
        return "the model's own chat template"
    return None
