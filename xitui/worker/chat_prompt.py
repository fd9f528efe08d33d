"""Turning chat messages into a prompt: the spec's template or style first, then the model's own."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from xitui.backends.base import RequestError
from xitui.core.chat_format.prompts import ChatTemplateError, PromptError, chat_format, conversation_prompt
from xitui.core.specs.spec import LLMFamily

__all__ = ["chat_format", "chat_prompt"]


def chat_prompt(
    family: LLMFamily, model_template: str | None, messages: Sequence[Mapping[str, Any]], bos: str, eos: str,
    **extra: Any,
) -> str:
    """The prompt text for a conversation, ending where the assistant speaks next (`extra`: more template
    variables, such as the tools)."""
    try:
        return conversation_prompt(family, model_template, messages, bos, eos, **extra)
    except (PromptError, ChatTemplateError) as exc:
        raise RequestError(str(exc)) from None
