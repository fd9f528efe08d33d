"""The builtin catalog: LLM families and embedding models that ship with xitui (package data), as plain
data. Parsing them into specs is the registry's job (core/specs/spec.py asks this module about names, so this
one imports no spec)."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any


def _load(name: str) -> list[dict[str, Any]]:
    data = json.loads(resources.files("xitui.core").joinpath(f"data/{name}").read_text("utf-8"))
    return data["families"] if isinstance(data, dict) else data


def source() -> str:
    """Where the LLM family catalog's facts come from (scripts/catalog-from-xinference writes it)."""
    data = json.loads(resources.files("xitui.core").joinpath("data/llm_families.json").read_text("utf-8"))
    return str(data.get("source", "xitui")) if isinstance(data, dict) else "xitui"


@cache
def raw_llms() -> dict[str, dict[str, Any]]:
    from xitui.core.specs import bundled
    items = _load("llm_families.json") + bundled.llm_specs()
    return {item["model_name"].lower(): item for item in items}


@cache
def raw_embeddings() -> dict[str, dict[str, Any]]:
    from xitui.core.specs import bundled
    items = _load("embedding_models.json") + bundled.embedding_specs()
    return {item["model_name"].lower(): item for item in items}


@cache
def _raw_styles() -> dict[str, dict[str, Any]]:
    return {item["style_name"].upper(): item for item in _load("prompt_styles.json")}


def style_fields(name: str) -> dict[str, Any] | None:
    """A builtin prompt style's fields as plain data (case-insensitive), without building the model."""
    return _raw_styles().get(name.upper())


def with_style_stops(stop: list[str] | None, stop_ids: list[int] | None,
                     style_name: str) -> tuple[list[str] | None, list[int] | None]:
    """A style's stop words and ids added to those a spec already has (its files' end tokens): a spec that
    names both says what stops its answers, since a spec's own `stop` wins over its style's."""
    style = style_fields(style_name) or {}
    merged_stop = list(dict.fromkeys([*(stop or []), *(style.get("stop") or [])])) or None
    merged_ids = list(dict.fromkeys([*(stop_ids or []), *(style.get("stop_token_ids") or [])])) or None
    return merged_stop, merged_ids


def is_builtin_name(name: str) -> bool:
    """True when `name` (any case) is a builtin LLM or embedding model."""
    key = name.lower()
    return key in raw_llms() or key in raw_embeddings()


def is_builtin_family(name: str) -> bool:
    return name.lower() in raw_llms()


def family_abilities(family: str) -> list[str]:
    """What a builtin family's models do (its `model_ability`), [] for an unknown family."""
    item = raw_llms().get(family.lower())
    return list(item.get("model_ability") or []) if item else []


def family_stops(family: str) -> tuple[list[str] | None, list[int] | None]:
    """A builtin family's own stop words and token ids (None where the catalog has none)."""
    item = raw_llms().get(family.lower()) or {}
    return item.get("stop"), item.get("stop_token_ids")


def family_prompt_style(family: str) -> str | None:
    """The builtin prompt style name that a builtin family uses, if any."""
    item = raw_llms().get(family.lower())
    return item.get("prompt_style") if item else None
