"""Which chat format a text is written in, by its role markers: how a prompt style, a model's own template and
a model's answer are compared (a spec whose style writes another format than the template the model was
trained on answers poorly)."""

from __future__ import annotations

#: The common chat formats, by a role marker only that format writes.
FORMATS = (("<|im_start|>", "ChatML"), ("<|start_header_id|>", "Llama 3"), ("<start_of_turn>", "Gemma"),
           ("[INST]", "[INST]"), ("<|user|>", "Phi-3"))


def format_of(text: str | None) -> str | None:
    """The chat format whose markers `text` holds (a template's source, or a rendered prompt), else None."""
    return next((name for marker, name in FORMATS if text and marker in text), None)


def style_format(style_name: str | None) -> str | None:
    """The chat format a builtin prompt style writes (None for a style with none of the known markers)."""
    from xitui.core.chat_format.prompts import SAMPLE_CONVERSATION, get_style, render_prompt

    style = get_style(style_name) if style_name else None
    return format_of(render_prompt(style, SAMPLE_CONVERSATION)) if style else None
