"""From a launch request to what a worker needs: which spec, which engine, which files."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from xitui import wire
from xitui.core.errors import LaunchError, NotFoundError
from xitui.core.specs.registry import Registry
from xitui.core.specs.spec import EmbeddingSpec, LLMFamily, LLMSpec, RerankSpec, local_path, normalise_model_type
from xitui.server.runtime.launch_devices import device_choice
from xitui.server.runtime.launch_envs import check_envs

#: The engine each format runs on, and the names users (and Xinference) give those engines.
ENGINE_FOR_FORMAT = {"ggufv2": "llama.cpp", "ggmlv3": "llama.cpp", "pytorch": "transformers"}
#: What `converted_to` says of a GGML v3 file: GGUF with the same tensor types.
GGML_TO_GGUF = "GGUF"
ENGINE_ALIASES = {
    "llama.cpp": "llama.cpp", "llama_cpp": "llama.cpp", "llama-cpp": "llama.cpp", "llama-cpp-python": "llama.cpp",
    "transformers": "transformers", "pytorch": "transformers",
    "sentence_transformers": "sentence_transformers", "sentence-transformers": "sentence_transformers",
}
#: The test engine (backends/scripted.py: replies from a JSON script, no weights): a launch names it as its
#: model_engine, and a server serves it only when started with this variable set to 1 (tests/support does).
SCRIPTED_ENGINE, SCRIPTED_SWITCH = "scripted", "XITUI_SCRIPTED_ENGINE"


@dataclass
class LaunchPlan:
    """What a launch request resolves to: the registration, the engine, the files and the worker's settings."""

    model_name: str
    model_type: str
    engine: str
    model_format: str
    model_size_in_billions: int | str | None
    quantization: str
    model_path: str | None
    model_id: str | None
    file_name: str | None
    context_length: int | None
    registration: dict[str, Any]
    model_revision: str | None = None
    #: Where `model_id` is downloaded from: "huggingface" or "modelscope" (the spec's model_hub).
    model_hub: str = "huggingface"
    envs: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    #: A PyTorch model run by llama.cpp: the GGUF type its weights are converted to, and why this engine.
    converted_to: str | None = None
    engine_reason: str | None = None
    #: A vision GGUF's projector: its path here, or the file name to download beside the model.
    projector: str | None = None

    def convert(self, why: str) -> None:
        """Run this PyTorch model on llama.cpp, converted once to GGUF (core/model_files/conversion.py)."""
        from xitui.core.model_files.conversion import GGUF_TYPES, can_convert

        refused = can_convert()
        if refused:
            raise LaunchError(f"model_engine llama.cpp for a PyTorch model converts it to GGUF, and {refused}")
        if self.model_path:
            from xitui.core.model_files.conversion import (
                architecture,
                converter_architectures,
                projector_refusal,
                sees,
            )

            arch = architecture(self.model_path)
            if arch not in converter_architectures():
                raise LaunchError(f"llama.cpp's converter does not know {arch or 'this model (config.json names no '}"
                                  f"{'' if arch else 'architectures)'}: model_engine transformers runs it")
            # a vision model converted without its projector would answer as if blind
            unseeing = sees(self.model_path) and projector_refusal(self.model_path)
            if unseeing:
                raise LaunchError(f"{unseeing}: model_engine transformers runs it, images and all")
        self.engine = "llama.cpp"
        self.converted_to = GGUF_TYPES[self.quantization or "none"]
        self.engine_reason = why

    @classmethod
    def build(cls, registry: Registry, request: dict[str, Any], allowed_envs: frozenset[str] = frozenset()
              ) -> LaunchPlan:
        """The plan for a launch request; `allowed_envs`: `envs` names the config allows besides the
        builtin allow-list. Blocking (the registry's files, the model's path): run it off the event loop."""
        name = request.get("model_name")
        if not isinstance(name, str) or not name:
            raise LaunchError("model_name: required")
        kind = normalise_model_type(request.get("model_type") or "LLM")
        spec = registry.get(kind, name)
        envs = check_envs(request.get("envs"), allowed_envs)
        plan = plan_for(spec, request)
        plan.envs = envs
        engine = request.get("model_engine")
        if engine == SCRIPTED_ENGINE and plan.model_type == "LLM":
            if os.environ.get(SCRIPTED_SWITCH) != "1":
                raise LaunchError(f"model_engine 'scripted' is xitui's test engine, off on this server (a test "
                                  f"server starts with {SCRIPTED_SWITCH}=1)")
            plan.engine = SCRIPTED_ENGINE
        elif engine:
            wanted = ENGINE_ALIASES.get(str(engine).lower())
            if wanted is None:
                raise LaunchError(f"model_engine {engine!r} is not an engine xitui runs (llama.cpp, transformers, "
                                  "sentence_transformers); leave it out to have it follow the format")
            if wanted == "llama.cpp" and plan.model_type == "LLM" and plan.model_format == "pytorch":
                plan.convert(f"asked for (model_engine {engine})")
            elif wanted != plan.engine:
                raise NotFoundError(
                    f"model_engine {engine!r} cannot run {plan.model_format} models; "
                    f"leave it out, or use {plan.engine!r}"
                )
        elif plan.model_type == "LLM" and plan.model_format == "pytorch":
            why = auto_conversion(plan, request)
            if why:
                plan.convert(why)
        for key in ("n_gpu_layers", "n_threads", "n_parallel", "speculative"):
            if request.get(key) is not None:
                plan.options[key] = request[key]
        device_envs, device_options = device_choice(request, plan.engine)
        plan.envs = {**device_envs, **plan.envs}  # (the launch's own envs win)
        plan.options.update(device_options)
        context = request.get("context_length")
        if context is not None and plan.model_type == "LLM":
            if isinstance(context, bool) or not isinstance(context, int) or not 16 <= context <= 10_000_000:
                raise LaunchError("context_length: a whole number of tokens, at least 16")
            plan.context_length = context
        return plan

    def describe(self) -> wire.ModelDescription:
        """Xinference's describe fields of this launch."""
        reg = self.registration
        data: wire.ModelDescription = {
            "model_type": self.model_type,
            "model_name": self.model_name,
            "model_format": self.model_format,
            "quantization": self.quantization,
        }
        if self.model_type == "LLM":
            data.update({
                "model_ability": reg["model_ability"],
                "model_family": reg["model_family"],
                "model_lang": reg["model_lang"],
                "model_description": reg.get("model_description"),
                "model_size_in_billions": self.model_size_in_billions,
                "context_length": self.context_length,
            })
        elif self.model_type == "rerank":  # Xinference's rerank description
            data.update({"model_ability": ["rerank"], "type": reg.get("type"), "max_tokens": reg.get("max_tokens"),
                         "language": reg["language"]})
        else:
            data.update({"dimensions": reg["dimensions"], "max_tokens": reg["max_tokens"],
                         "language": reg["language"]})
        return data

    def worker_settings(self) -> wire.Settings:
        settings: wire.Settings = {
            "model_name": self.model_name,
            "model_type": self.model_type,
            "engine": self.engine,
            "model_format": self.model_format,
            "quantization": self.quantization,
            "model_path": self.model_path,
            "model_id": self.model_id,
            "model_revision": self.model_revision,
            "model_hub": self.model_hub,
            "file_name": self.file_name,
            "context_length": self.context_length,
            "registration": self.registration,
        }
        for key in ("n_gpu_layers", "n_threads", "n_parallel"):
            if key in self.options:
                settings[key] = int(self.options[key])
        if "speculative" in self.options:
            settings["speculative"] = str(self.options["speculative"])
        if self.converted_to:
            settings["convert_to"] = self.converted_to
            settings["engine_reason"] = self.engine_reason or ""
        if self.projector:
            settings["projector"] = self.projector
        return settings


def auto_conversion(plan: LaunchPlan, request: dict[str, Any]) -> str | None:
    """Why a PyTorch model launched without an engine named runs on llama.cpp (converted to GGUF), or None for
    transformers: on a machine without an NVIDIA GPU, for an architecture llama.cpp's converter knows, with
    the files here (measured: Gemma 3 270M 10.8 tokens/s through transformers, 41 as F16 GGUF, 71 as
    Q4_K_M; and the seed's 4-bit and 8-bit, which transformers runs only with bitsandbytes on a GPU)."""
    from xitui.core.machine.memory import gpus
    from xitui.core.model_files import conversion

    if not plan.model_path or conversion.can_convert() or gpus()[0]:
        return None
    arch = conversion.architecture(plan.model_path)
    if arch not in conversion.converter_architectures():
        return None
    if conversion.sees(plan.model_path) and conversion.projector_refusal(plan.model_path):
        return None  # its projector cannot be made here: transformers reads its images
    return (f"llama.cpp, as this machine has no GPU: it runs {arch} several times faster than transformers on a "
            f"CPU (model_engine transformers keeps transformers)")


def _choices(specs: list[LLMSpec]) -> str:
    return ", ".join(
        f"{s.model_format}/{s.model_size_in_billions}B/{s.quantization}" for s in specs
    )


def plan_for(spec: LLMFamily | EmbeddingSpec | RerankSpec, request: dict[str, Any]) -> LaunchPlan:
    """Which of a registration's specs a launch request picks, and where its files are (or come from)."""
    return _plan_llm(spec, request) if isinstance(spec, LLMFamily) else _plan_embedding(spec, request)


def _plan_llm(family: LLMFamily, request: dict[str, Any]) -> LaunchPlan:
    fmt = request.get("model_format")
    size = request.get("model_size_in_billions")
    quant = request.get("quantization")
    found = family.find_specs(fmt, size, quant)
    if not found:
        raise NotFoundError(
            f"{family.model_name} has no spec for format={fmt or 'any'} size={size or 'any'} "
            f"quantization={quant or 'any'} (it has: {_choices(family.model_specs)})"
        )
    if quant is None:
        # Unquantized first: 4-bit / 8-bit pytorch need a GPU, and a user who names no quantization
        # expects the model that runs everywhere.
        found.sort(key=lambda s: s.model_format == "pytorch" and s.quantization != "none")
    spec = found[0]
    engine = ENGINE_FOR_FORMAT[spec.model_format]
    one_file = spec.model_format in ("ggufv2", "ggmlv3")
    path: str | None = None
    file_name: str | None = None
    if one_file and spec.model_file_name_template:
        file_name = spec.model_file_name_template.format(quantization=spec.quantization)
    if spec.model_uri:
        path = local_path(spec.model_uri)
        if one_file and not os.path.isfile(path):
            if not file_name:
                raise LaunchError(f"model_uri {path} is a directory: add model_file_name_template to the spec")
            path = os.path.join(path, file_name)
        _check_exists(family.model_name, path, spec.model_format, bundled=family.is_builtin)
    elif not spec.model_id:
        raise LaunchError(f"{family.model_name}: the spec has neither model_uri nor model_id")
    else:
        _check_hub(spec.model_hub)
    plan = LaunchPlan(
        model_name=family.model_name,
        model_type="LLM",
        engine=engine,
        model_format=spec.model_format,
        model_size_in_billions=spec.model_size_in_billions,
        quantization=spec.quantization,
        model_path=path,
        model_id=spec.model_id,
        file_name=file_name,
        context_length=family.context_length,
        registration=family.registration(),
        model_revision=spec.model_revision,
        model_hub=spec.model_hub,
    )
    plan.projector = _projector(family.model_name, spec, path, request.get("multimodal_projector"))
    if spec.model_format == "ggmlv3":  # llama.cpp has read only GGUF since August 2023: converted once
        plan.converted_to = GGML_TO_GGUF
        plan.engine_reason = "llama.cpp reads GGUF only: the GGML v3 file is converted once (its tensors as they are)"
    return plan


def _projector(name: str, spec: LLMSpec, model_file: str | None, chosen: str | None) -> str | None:
    """The projector a GGUF vision model loads: the one the launch names (of the spec's), else its first; a
    path where the model's file is here (beside it, or absolute), else a file name downloaded with it."""
    names = spec.multimodal_projectors or []
    if chosen is not None and chosen not in names:
        raise LaunchError(f"multimodal_projector: {chosen[:100]!r} is not one of {name}'s "
                          f"({', '.join(names) or 'its spec names none'})")
    if not names:
        return None
    file = (chosen or names[0]).format(quantization=spec.quantization)
    if model_file is None:
        if os.path.isabs(file):
            raise LaunchError(f"{name}: the projector {file} is a path, and the model is downloaded: name the "
                              "projector's file in its repository")
        return file
    path = file if os.path.isabs(file) else os.path.join(os.path.dirname(model_file), file)
    if not os.path.isfile(path):
        raise LaunchError(f"{name}: projector file not found: {path}")
    return path


def _check_hub(hub: str) -> None:
    """ModelScope downloads go through its own package (there is no other way to its hub): refused in one
    line where it is not installed, rather than fetched from Hugging Face under the same id."""
    import importlib.util

    if hub == "modelscope" and importlib.util.find_spec("modelscope") is None:
        raise LaunchError("model_hub 'modelscope': the modelscope package is not installed here (pip install "
                          "modelscope); or download the files and name them in model_uri")


def _check_exists(name: str, path: str, fmt: str, bundled: bool) -> None:
    if bundled and not os.path.exists(path):
        return  # a bundled model's file is assembled by its worker on first launch
    if fmt == "pytorch":
        if not os.path.isdir(path):
            raise LaunchError(f"{name}: model directory not found: {path}")
    elif not os.path.isfile(path):
        if os.path.exists(path):
            raise LaunchError(f"{name}: {os.path.basename(path)} is not a regular file")
        if os.path.isdir(os.path.dirname(path)):
            raise LaunchError(f"{name}: model file not found: {path}")
        raise LaunchError(f"{name}: model file not found: {path} (its directory does not exist either)")


def _plan_embedding(spec: EmbeddingSpec | RerankSpec, request: dict[str, Any]) -> LaunchPlan:
    """An embedding model, or a rerank model (a cross-encoder): both run on sentence-transformers."""
    if not spec.model_specs:
        raise LaunchError(f"{spec.model_name} has no model_specs")
    chosen = spec.model_specs[0]
    path = local_path(chosen.model_uri) if chosen.model_uri else None
    if path is not None and not os.path.isdir(path):
        raise LaunchError(f"{spec.model_name}: model directory not found: {path}")
    if path is None and not chosen.model_id:
        raise LaunchError(f"{spec.model_name}: the spec has neither model_uri nor model_id")
    if path is None:
        _check_hub(chosen.model_hub)
    return LaunchPlan(
        model_name=spec.model_name,
        model_type="rerank" if isinstance(spec, RerankSpec) else "embedding",
        engine="sentence_transformers",
        model_format=chosen.model_format,
        model_size_in_billions=None,
        quantization=chosen.quantization,
        model_path=path,
        model_id=chosen.model_id,
        file_name=None,
        context_length=spec.max_tokens,
        registration=spec.registration(),
        model_revision=chosen.model_revision,
        model_hub=chosen.model_hub,
    )
