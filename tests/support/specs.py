"""The JSON specs tests register: the documentation's GGUF and pytorch forms, and scripted models."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: A ChatML conversation (the assistant's turn ends at <|im_end|>, the spec's stop word). It does not render
#: tools, so a request's tools go in the system prompt and calls are written in hermes' <tool_call> syntax.
CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "<|im_start|>assistant\n")
#: The same, opening a thought for the model unless told not to (chat_template_kwargs enable_thinking: false).
THINKING_CHATML = CHATML + "{% if enable_thinking is not defined or enable_thinking %}<think>\n{% endif %}"


def gguf_spec(name: str, gguf: Path, *, version: int = 1, **extra: object) -> str:
    """The documentation's LLM JSON for a GGUF file (version 1: quantizations list; 2: one quantization).
    Gemma's file chats in the GEMMA prompt style, as the documentation writes it; any other (SmolLM2's) with
    the chat template its GGUF carries, ending at ChatML's <|im_end|>."""
    gemma = gguf.name == "gemma-3-270m-q4_k_m.gguf"
    spec: dict[str, object] = {
        "version": version,
        "context_length": 2048,
        "model_name": name,
        "model_lang": ["en"],
        "model_ability": ["generate", "chat"],
        "model_family": "other",
        **({"prompt_style": "GEMMA"} if gemma else {"stop": ["<|im_end|>"]}),
        "model_specs": [{
            "model_format": "ggufv2",
            "model_size_in_billions": "0_27",
            ("quantizations" if version == 1 else "quantization"): ["q4_k_m"] if version == 1 else "q4_k_m",
            "model_id": "google/gemma-3-270m",
            # the documentation's template for gemma's file; any other file by its own name
            "model_file_name_template": "gemma-3-270m-{quantization}.gguf" if gemma else gguf.name,
            "model_uri": f"file://{gguf.parent}",
        }],
    }
    spec.update(extra)
    return json.dumps(spec)


def pytorch_spec(name: str, directory: Path, **extra: object) -> str:
    """The documentation's pytorch LLM JSON (version 1, three quantizations) for a local directory."""
    spec: dict[str, object] = {
        "version": 1,
        "context_length": 2048,
        "model_name": name,
        "model_lang": ["en"],
        "model_ability": ["generate"],
        "model_family": "other",
        "model_specs": [{
            "model_format": "pytorch",
            "model_size_in_billions": 7,
            "quantizations": ["4-bit", "8-bit", "none"],
            "model_id": "meta-llama/Llama-2-7b",
            "model_uri": f"file://{directory}",
        }],
    }
    spec.update(extra)
    return json.dumps(spec)


def scripted_spec(name: str, directory: Path, script: Sequence[dict[str, Any]] | dict[str, Any], *,
                  abilities: Sequence[str] = ("generate", "chat"), chat_template: str | None = CHATML,
                  stop: Sequence[str] = ("<|im_end|>",), **extra: object) -> str:
    """A model that answers from `script` (rules, or the whole script: backends/scripted.py), written to
    `directory`/script.json; the spec is a pytorch one of that directory, launched with model_engine "scripted"."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "script.json").write_text(json.dumps(script))
    spec: dict[str, object] = {
        "version": 2,
        "context_length": 4096,
        "model_name": name,
        "model_lang": ["en"],
        "model_ability": list(abilities),
        "model_family": "other",
        "chat_template": chat_template,
        "stop": list(stop),
        "model_specs": [{"model_format": "pytorch", "model_size_in_billions": 1, "quantization": "none",
                         "model_uri": str(directory)}],
    }
    spec.update(extra)
    return json.dumps(spec)
