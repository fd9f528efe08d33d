"""The spec being built: answers so far, where each proposal came from, and the spec they make."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xitui.core.model_files.inspect import Inspection
from xitui.core.specs.names import ModelType


@dataclass
class Draft:
    """The spec being built, with where each of its values came from."""

    model_type: ModelType | None = None
    source: str | None = None
    inspection: Inspection | None = None
    #: The spec so far (version 2 keys), from the inspection or the spec file, then the answers.
    values: dict[str, Any] = field(default_factory=dict)
    #: Where each value came from, until the user answers it.
    origins: dict[str, str] = field(default_factory=dict)
    #: The model's own chat template (from its files), kept apart from the spec's choice.
    own_template: str | None = None
    gguf_file: str | None = None
    #: Replace an existing registration of the same name on the server.
    replace: bool = False
    #: The chat format is the spec file's own (a template or a full prompt_style object), untouched so far.
    format_from_spec: bool = False

    def load_inspection(self, found: Inspection) -> None:
        self.inspection = found
        self.model_type = found.model_type
        self.values = found.spec()
        self.origins = {key: p.origin for key, p in found.proposals.items()}
        self.origins.setdefault("language", self.origins.get("model_lang", "default"))
        self.own_template = found.value("chat_template")

    def load_spec(self, registration: dict[str, Any], model_type: ModelType, origin: str) -> None:
        self.model_type = model_type
        self.values = {k: v for k, v in registration.items() if k != "is_builtin" and v is not None}
        self.origins = {key: origin for key in self.values}
        self.origins["model_id"] = origin
        self.own_template = None
        self.format_from_spec = bool(registration.get("chat_template") or registration.get("prompt_style"))

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def origin(self, key: str) -> str | None:
        return self.origins.get(key)

    def set(self, key: str, value: Any) -> None:
        """An answer: it replaces the proposal (and its origin), or drops the field when empty."""
        if value is None or value == "" or value == []:
            self.values.pop(key, None)
        else:
            self.values[key] = value
        self.origins.pop(key, None)

    @property
    def model_id(self) -> str | None:
        specs = self.values.get("model_specs") or [{}]
        return specs[0].get("model_id")

    def set_model_id(self, model_id: str | None) -> None:
        for entry in self.values.get("model_specs") or []:
            if model_id:
                entry["model_id"] = model_id
            else:
                entry.pop("model_id", None)
        self.origins.pop("model_id", None)

    def spec(self) -> dict[str, Any]:
        """The spec as it stands (version 2)."""
        order = ["version", "context_length", "model_name", "model_lang", "model_ability", "model_description",
                 "model_family", "dimensions", "type", "max_tokens", "language", "model_specs", "chat_template",
                 "prompt_style", "stop_token_ids", "stop"]
        spec = {"version": 2, **self.values}
        return {k: spec[k] for k in order if k in spec} | {k: v for k, v in spec.items() if k not in order}
