"""A launch request (POST /v1/models, /v1/estimate, and what launches.json remembers), checked field by field."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, WithJsonSchema

from xitui.core.specs.names import MODEL_TYPES
from xitui.core.units import parse_duration
from xitui.server.edge.request_body import WHOLE, Body
from xitui.server.runtime import launch_envs

#: A time to live as `parse_duration` reads it: seconds, 30s / 10m / 1h30m / 2d, or never (documented;
#: the launch itself checks it, so a bad one gets parse_duration's one line).
TTL_PATTERN = r"^(never|-?[0-9]+(\.[0-9]+)?|([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+)$"


#: The engine names a launch may give (xitui's and Xinference's spellings; any case is read).
ENGINE_NAMES = ("llama.cpp", "llama_cpp", "llama-cpp", "llama-cpp-python", "transformers", "pytorch",
                "sentence_transformers", "sentence-transformers")


#: A model uid: it names the model's log files, so a file name's characters, and short enough for any disk.
UID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
#: Longest ttl in seconds (ten years): past it, say "never" (-1).
MAX_TTL = 10 * 365 * 24 * 3600


class LaunchBody(Body):
    """POST /v1/models (and /v1/estimate, and what launches.json remembers): one launch, checked."""

    #: Letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 (default: the name).
    model_uid: Annotated[str, Field(pattern=UID_PATTERN)] | None = None
    model_name: Annotated[str, Field(min_length=1, max_length=200)]
    model_type: Annotated[str, Field(json_schema_extra={"enum": list(MODEL_TYPES)})] = "LLM"
    model_engine: Annotated[str, Field(json_schema_extra={"enum": sorted(ENGINE_NAMES)})] | None = None
    model_format: Annotated[str, Field(max_length=64)] | None = None
    model_size_in_billions: int | float | Annotated[str, Field(max_length=64)] | None = None
    quantization: Annotated[str, Field(max_length=64)] | None = None
    replica: Annotated[int, Field(ge=1, le=64, strict=True), WHOLE] = 1
    #: GPUs to use: "auto" (those there are), null or 0 (the CPU only), or a count this machine has
    n_gpu: Annotated[int, Field(ge=0, le=1024, strict=True), WHOLE] | Literal["auto"] | None = "auto"
    #: Which GPUs (indexes as NVML counts them), one or a list
    gpu_idx: (Annotated[int, Field(ge=0, le=1023, strict=True), WHOLE]
              | Annotated[list[Annotated[int, Field(ge=0, le=1023, strict=True), WHOLE]], Field(max_length=64)]
              | None) = None
    #: Environment variables for the worker: only those on the allow-list (devices, threads, Hugging Face,
    #: XITUI_THREADS...; see docs/security.md); anything else is refused.
    envs: Annotated[dict[str, str], Field(max_length=64), WithJsonSchema({
        "type": "object", "maxProperties": 64, "propertyNames": {"enum": sorted(launch_envs.ALLOWED)},
        "additionalProperties": {"type": "string", "maxLength": launch_envs.MAX_VALUE, "pattern": "^[^\\u0000]*$"}})
    ] | None = None
    #: xitui's own: tokens of context to allocate (default: the spec's context_length)
    context_length: Annotated[int, Field(ge=16, le=10_000_000, strict=True), WHOLE] | None = None
    #: llama.cpp: layers on the GPU (-1: all, 0: none)
    n_gpu_layers: Annotated[int, Field(ge=-1, le=100_000, strict=True), WHOLE] | None = None
    #: threads the model computes with (default: the physical cores, shared out between replicas)
    n_threads: Annotated[int, Field(ge=1, le=1024, strict=True), WHOLE] | None = None
    #: idle time before the model is unloaded: seconds, or "30s", "10m", "1h"; 0 = once idle, -1 = never
    ttl: (Annotated[int, Field(ge=-1, le=MAX_TTL, strict=True), WHOLE]
          | Annotated[float, Field(ge=-1, le=MAX_TTL, allow_inf_nan=False, strict=True)]
          | Annotated[str, Field(max_length=64),
                      WithJsonSchema({"type": "string", "pattern": TTL_PATTERN, "maxLength": 64})]
          | None) = None
    #: bring the model back, with these settings, whenever the server starts
    restore: Annotated[bool, Field(strict=True)] = False
    #: launch even when the memory estimate says it will not fit
    force: Annotated[bool, Field(strict=True)] = False
    #: GGUF vision models: which of the spec's multimodal_projectors to load (default: its first)
    multimodal_projector: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    #: llama.cpp: requests decoded together in one batch (each with the whole context); more wait their turn
    n_parallel: Annotated[int, Field(ge=1, le=64, strict=True), WHOLE] | None = None
    #: llama.cpp: speculative decoding of greedy answers: "ngram" (prompt lookup) or "off" (default: the
    #: config's server.speculative, "off")
    speculative: Literal["ngram", "off"] | None = None

    def request(self) -> dict[str, Any]:
        """The launch as plain data: what the plan is built from and what launches.json keeps."""
        return self.model_dump(include=set(LAUNCH_FIELDS))

    def ttl_seconds(self, default: float | None) -> float | None:
        """Idle seconds before the model is unloaded (None: never); `default` when the launch names none."""
        return default if self.ttl is None else parse_duration(self.ttl)


#: The launch fields the server knows: what it keeps of a launch (launches.json); other keys are dropped.
LAUNCH_FIELDS = frozenset(LaunchBody.model_fields)


#: Longest launch (or estimate) body: its fields and 64 environment variables of 4 KiB fit in a quarter of it.
LAUNCH_BODY = 1024 * 1024
