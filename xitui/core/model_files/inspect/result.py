"""What inspecting a model's files found: facts, and a proposed answer (with its origin) per spec field."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from xitui.core.specs.names import ModelType

Kind = Literal["gguf", "pytorch", "sentence-transformers", "cross-encoder", "hub"]


@dataclass
class Proposal:
    """A proposed answer and where it came from, shown beside the question: `(from GGUF metadata)`."""

    value: Any
    origin: str


@dataclass
class Inspection:
    """The result of `inspect_source`: facts read from the files and a proposal per spec field.

    LLM proposal keys: model_name, model_family, model_ability, model_lang, context_length,
    model_description, chat_template (the model's own), stop, stop_token_ids, model_format,
    model_size_in_billions, quantization, quantizations, model_file_name_template, model_uri, model_id.
    Embedding keys: model_name, dimensions, max_tokens, language, model_uri, model_id.
    Rerank keys: model_name, max_tokens, type, language, model_uri, model_id.
    """

    source: str
    kind: Kind
    model_type: ModelType
    facts: dict[str, Any] = field(default_factory=dict)
    proposals: dict[str, Proposal] = field(default_factory=dict)
    #: GGUF files found in a directory (or a Hub repository), for picking one.
    gguf_files: list[str] = field(default_factory=list)
    #: One line each: what could not be read and why (offline, no config.json...).
    notes: list[str] = field(default_factory=list)

    def propose(self, key: str, value: Any, origin: str) -> None:
        if value is not None:
            self.proposals[key] = Proposal(value, origin)

    def value(self, key: str, default: Any = None) -> Any:
        found = self.proposals.get(key)
        return default if found is None else found.value

    def origin(self, key: str) -> str | None:
        found = self.proposals.get(key)
        return None if found is None else found.origin

    def spec(self) -> dict[str, Any]:
        """The spec these proposals make (version 2), as `xitui inspect` prints it."""
        v = self.value
        if self.model_type in ("embedding", "rerank"):
            entry = {"model_format": "pytorch", "model_id": v("model_id"), "model_uri": v("model_uri"),
                     "quantization": "none"}
            head = ({"dimensions": v("dimensions")} if self.model_type == "embedding"
                    else {"type": v("type", "normal")})
            flat: dict[str, Any] = {"version": 2, "model_name": v("model_name"), **head,
                                    "max_tokens": v("max_tokens"), "language": v("language", ["en"]),
                                    "model_specs": [{k: val for k, val in entry.items() if val is not None}]}
            return {k: val for k, val in flat.items() if val is not None}
        quantizations = v("quantizations") or [v("quantization", "none")]
        specs = []
        for quant in quantizations:
            entry = {
                "model_format": v("model_format"),
                "model_size_in_billions": v("model_size_in_billions"),
                "quantization": quant,
                "model_id": v("model_id"),
                "model_file_name_template": v("model_file_name_template"),
                "model_uri": v("model_uri"),
                "multimodal_projectors": v("multimodal_projectors"),
            }
            specs.append({k: val for k, val in entry.items() if val is not None})
        spec: dict[str, Any] = {
            "version": 2,
            "context_length": v("context_length", 2048),
            "model_name": v("model_name"),
            "model_lang": v("model_lang", ["en"]),
            "model_ability": v("model_ability", ["generate"]),
            "model_description": v("model_description"),
            "model_family": v("model_family", "other"),
            "model_specs": specs,
            "chat_template": v("chat_template"),
            "stop_token_ids": v("stop_token_ids"),
            "stop": v("stop"),
        }
        if v("prompt_style"):
            spec["prompt_style"] = v("prompt_style")
        for key in ("tool_parser", "reasoning_start_tag", "reasoning_end_tag"):
            if v(key):
                spec[key] = v(key)
        return {k: val for k, val in spec.items() if val is not None}
