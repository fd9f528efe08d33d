"""What is legal in a spec but likely not what its author meant: one line each, for `validate`, `register` and
the wizard to show before the spec is used (the seed's own warning: a chat family declared generate-only)."""

from __future__ import annotations

import json
from typing import Any

from xitui.core.chat_format import tool_calls
from xitui.core.specs import catalog


def spec_advice(model_type: str, source: str | bytes | dict[str, Any]) -> list[str]:
    """Warnings about an LLM spec (nothing for embedding and rerank specs, or for one that does not parse:
    parsing says what is wrong with those)."""
    if str(model_type).lower() != "llm":
        return []
    try:
        data = source if isinstance(source, dict) else json.loads(source)
    except ValueError:
        return []
    if not isinstance(data, dict):
        return []
    found: list[str] = []
    family = data.get("model_family")
    abilities = data.get("model_ability") or ["generate"]
    abilities = [a for a in abilities if isinstance(a, str)] if isinstance(abilities, list) else []
    own_format = bool(data.get("chat_template") or data.get("prompt_style"))
    if not family:
        found.append("model_family: not given, so 'other': no family's conventions (stop words, tool-call syntax, "
                     "reasoning tags) apply; name the family the weights come from (`xitui registrations`)")
    elif isinstance(family, str) and catalog.is_builtin_family(family):
        known = catalog.family_abilities(family)
        if "chat" in known and "chat" not in abilities:
            found.append(f"model_ability: {family} is a chat family but the spec says {', '.join(abilities)} only: "
                         "its models answer turns, not raw text; add 'chat'")
        elif known and "chat" not in known and "chat" in abilities and not own_format:
            found.append(f"model_ability: {family} is a base family (generate only) but the spec says chat: a "
                         "base model follows no chat format; give a chat_template or prompt_style, or leave 'chat' out")
    parser = data.get("tool_parser")
    if isinstance(parser, str) and parser.lower() in tool_calls.UNREAD_PARSERS:
        found.append(f"tool_parser: xitui does not read {parser!r} calls yet: its requests with tools are refused "
                     "(a Xinference cluster runs them)")
    return found
