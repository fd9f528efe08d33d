"""Builtin and custom model registrations.

Persisted registrations live in `HOME/model/llm/NAME.json` and `HOME/model/embedding/NAME.json`; the
directory is the truth, read again on every call, so several processes can share it. Writes happen under
one file lock and are atomic, so concurrent writers never lose or corrupt an entry. Registrations made
without `persist` live in this Registry object only (the server's lifetime).
"""

from __future__ import annotations

import builtins
import json
import logging
from functools import cache
from pathlib import Path
from typing import Any

from filelock import FileLock

from xitui.core.errors import ConflictError, ForbiddenError, NotFoundError, SpecError
from xitui.core.files import atomic_write
from xitui.core.specs import catalog
from xitui.core.specs.names import MODEL_TYPES
from xitui.core.specs.spec import ModelSpec, ModelType, normalise_model_type, parse_embedding, parse_llm, parse_spec

log = logging.getLogger("xitui.registry")

_SUBDIR = {"LLM": "llm", "embedding": "embedding", "rerank": "rerank"}


@cache
def builtin_llms() -> dict[str, ModelSpec]:
    """The catalog's LLM families, parsed once."""
    return {key: parse_llm(raw, builtin=True) for key, raw in catalog.raw_llms().items() if raw["model_specs"]}


@cache
def builtin_embeddings() -> dict[str, ModelSpec]:
    return {key: parse_embedding(raw, builtin=True) for key, raw in catalog.raw_embeddings().items()}


class Registry:
    """Every registration: the builtin catalog, the persisted specs on disk and those of this server's lifetime."""

    def __init__(self, home: Path):
        self.home = Path(home)
        self._memory: dict[ModelType, dict[str, ModelSpec]] = {"LLM": {}, "embedding": {}, "rerank": {}}
        self._warned: set[str] = set()
        #: Problems met while reading persisted files (one line each), for front ends to show.
        self.warnings: list[str] = []

    # --- paths and disk -------------------------------------------------------------------------

    def _dir(self, model_type: ModelType) -> Path:
        return self.home / "model" / _SUBDIR[model_type]

    def _lock(self) -> FileLock:
        path = self.home / "model" / ".lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path), timeout=30)

    def _read_disk(self, model_type: ModelType) -> dict[str, ModelSpec]:
        found: dict[str, ModelSpec] = {}
        directory = self._dir(model_type)
        if not directory.is_dir():
            return found
        for path in sorted(directory.glob("*.json")):
            try:
                spec = parse_spec(model_type, path.read_bytes())
                if spec.model_name != path.stem:
                    raise SpecError([f"model_name {spec.model_name!r} does not match the file name"])
            except SpecError as exc:
                self._warn(f"skipped {path}: {exc}")
                continue
            except OSError as exc:
                self._warn(f"skipped {path}: {exc.strerror}")
                continue
            found[spec.model_name.lower()] = spec
        return found

    def _warn(self, message: str) -> None:
        if message not in self._warned:
            self._warned.add(message)
            self.warnings.append(message)
            log.warning(message)

    # --- queries --------------------------------------------------------------------------------

    def _builtins(self, model_type: ModelType) -> dict[str, ModelSpec]:
        if model_type == "rerank":
            return {}  # no builtin rerank models: register one (a local cross-encoder, or one on the Hub)
        return dict(builtin_llms() if model_type == "LLM" else builtin_embeddings())

    def _custom(self, model_type: ModelType) -> dict[str, ModelSpec]:
        merged = self._read_disk(model_type)
        merged.update(self._memory[model_type])
        return merged

    def list(
        self, model_type: str, *, detailed: bool = False, builtin: bool = True, custom: bool = True
    ) -> list[dict[str, Any]]:
        """Registrations as Xinference lists them: names + is_builtin, or full registrations."""
        kind = normalise_model_type(model_type)
        specs = self.specs(kind, builtin=builtin, custom=custom)
        if detailed:
            # `persisted` is xitui's own field (Xinference has none): kept across server restarts or not
            in_memory = self._memory[kind]
            return [s.registration() | ({} if s.is_builtin else {"persisted": s.model_name.lower() not in in_memory})
                    for s in specs]
        return [{"model_name": s.model_name, "is_builtin": s.is_builtin} for s in specs]

    # `list` names the method above from here on in the class body: annotations use `builtins.list`
    def specs(self, model_type: str, *, builtin: bool = True, custom: bool = True) -> builtins.list[ModelSpec]:
        """The registered specs of a type: builtin ones first, then custom ones by name (one read of the disk)."""
        kind = normalise_model_type(model_type)
        specs: builtins.list[ModelSpec] = []
        if builtin:
            specs += self._builtins(kind).values()
        if custom:
            specs += sorted(self._custom(kind).values(), key=lambda s: s.model_name.lower())
        return specs

    def get(self, model_type: str, model_name: str) -> ModelSpec:
        kind = normalise_model_type(model_type)
        key = model_name.lower()
        spec = self._custom(kind).get(key) or self._builtins(kind).get(key)
        if spec is None:
            raise NotFoundError(f"{kind} model {model_name!r} is not registered")
        return spec

    def find(self, model_name: str) -> tuple[ModelType, ModelSpec]:
        """Look a name up among the model types (custom first, then builtin)."""
        kinds = MODEL_TYPES
        for kind in kinds:
            try:
                return kind, self.get(kind, model_name)
            except NotFoundError:
                continue
        raise NotFoundError(f"model {model_name!r} is not registered")

    # --- changes --------------------------------------------------------------------------------

    def register(
        self, model_type: str, source: str | bytes | dict[str, Any], *, persist: bool = False
    ) -> ModelSpec:
        """Validate and add a custom registration; refuse a name that is taken."""
        kind = normalise_model_type(model_type)
        spec = parse_spec(kind, source)
        key = spec.model_name.lower()
        with self._lock():
            taken = self._custom(kind)
            if key in taken or catalog.is_builtin_name(key):
                raise ConflictError(f"Model {spec.model_name} already registered")
            if persist:
                data = json.dumps(spec.registration(), indent=2, ensure_ascii=False).encode("utf-8")
                atomic_write(self._dir(kind) / f"{spec.model_name}.json", data)
            else:
                self._memory[kind][key] = spec
        return spec

    def unregister(self, model_type: str, model_name: str) -> None:
        kind = normalise_model_type(model_type)
        key = model_name.lower()
        if key in self._builtins(kind):
            raise ForbiddenError(f"{model_name!r} is a builtin model and cannot be unregistered")
        with self._lock():
            removed = self._memory[kind].pop(key, None) is not None
            for path in self._dir(kind).glob("*.json") if self._dir(kind).is_dir() else []:
                if path.stem.lower() == key:
                    path.unlink(missing_ok=True)
                    removed = True
        if not removed:
            raise NotFoundError(f"{kind} model {model_name!r} is not registered")
