"""Names read off files: the quantization inside a GGUF file name, a model name, a family for an architecture."""

from __future__ import annotations

import os
import re

from xitui.core.specs import catalog

#: A quantization as it appears in GGUF file names (Q4_K_M, q8_0, IQ4_XS, F16, BF16, UD-Q4_K_XL ...),
#: between separators and before the extension.
_QUANT_RE = re.compile(
    r"(?i)(?<![a-z0-9])((?:ud-)?(?:i?q\d(?:_[a-z0-9]+)*|tq\d_0|mxfp4(?:_moe)?|bf16|f16|f32))(?=[-._]|$)"
)
_SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})$")

#: GGUF `general.architecture` / transformers `model_type` -> builtin families, the likeliest first.
ARCHITECTURE_FAMILIES: dict[str, tuple[str, ...]] = {
    "llama": ("llama-3.1-instruct", "llama-3-instruct", "llama-3.2-instruct", "llama-2-chat", "llama-3", "llama-2",
              "tiny-llama", "vicuna-v1.5", "wizardlm-v1.0", "openbuddy"),
    "mistral": ("mistral-instruct-v0.2", "mistral-nemo-instruct", "mistral-v0.1"),
    "mixtral": ("mixtral-instruct-v0.1",),
    "qwen2": ("qwen2.5-instruct", "qwen2-instruct"),
    "qwen": ("qwen-chat",),
    "gemma": ("gemma-it",),
    "gemma3": ("gemma-3-it",),
    "gemma3_text": ("gemma-3-it",),
    "phi3": ("phi-3-mini-4k-instruct", "phi-3-mini-128k-instruct"),
    "chatglm": ("chatglm3", "chatglm"),
    "internlm2": ("internlm2-chat",),
    "internlm": ("internlm-chat-7b",),
    "falcon": ("falcon-instruct",),
    "baichuan": ("baichuan-2-chat",),
    "command-r": ("c4ai-command-r-v01",),
    "cohere": ("c4ai-command-r-v01",),
    "deepseek": ("deepseek-chat", "deepseek-coder-instruct"),
    "deepseek2": ("deepseek-chat",),
    "gpt2": ("gpt-2",),
    "starcoder": ("starchat-beta",),
    "gpt_bigcode": ("starchat-beta",),
    "orion": ("orion-chat",),
    "minicpm": ("minicpm-2b-sft-bf16",),
    "xverse": ("xverse-chat",),
    "codeshell": ("codeshell-chat",),
}


def quantization_in(file_name: str) -> tuple[str, str, str] | None:
    """(before, quantization, after) when a GGUF file name carries its quantization; the last match wins
    (`model-7b-q4_k_m.gguf` -> ('model-7b-', 'q4_k_m', '.gguf'))."""
    stem, ext = os.path.splitext(file_name)
    shard = _SHARD_RE.search(stem)
    tail = ""
    if shard:
        stem, tail = stem[: shard.start()], stem[shard.start():]
    matches = list(_QUANT_RE.finditer(stem))
    if not matches:
        return None
    last = matches[-1]
    return stem[: last.start()], last.group(1), stem[last.end():] + tail + ext


def file_name_template(file_names: list[str]) -> tuple[str, list[str]] | None:
    """The `model_file_name_template` and quantizations shared by GGUF files that differ only in their
    quantization (`m-{quantization}.gguf`, ['Q4_K_M', 'Q8_0']); None when they do not."""
    parts = [quantization_in(name) for name in file_names]
    if not parts or any(p is None for p in parts):
        return None
    shapes = {(p[0], p[2]) for p in parts if p is not None}
    if len(shapes) != 1:
        return None
    before, after = shapes.pop()
    return f"{before}{{quantization}}{after}", [p[1] for p in parts if p is not None]


def model_name_from(text: str) -> str:
    """A registrable name from a file name, folder or repository name: no extension, no quantization,
    only letters, digits, '_' and '-'; a builtin name gets a '-custom' suffix."""
    base = text.rstrip("/").rsplit("/", 1)[-1]
    if base.lower().endswith(".gguf"):
        found = quantization_in(base)
        base = found[0] + found[2][: -len(".gguf")] if found else base[: -len(".gguf")]
        base = _SHARD_RE.sub("", base)
    name = re.sub(r"[^A-Za-z0-9_-]+", "-", base).strip("-_")
    name = re.sub(r"-{2,}", "-", name) or "custom-model"
    if not name[0].isalnum():
        name = f"m{name}"
    name = name[:90]
    return f"{name}-custom" if catalog.is_builtin_name(name) else name


def families_for(architecture: str | None) -> list[str]:
    """Builtin families for an architecture, the likeliest first (empty when none fits)."""
    if not architecture:
        return []
    found = ARCHITECTURE_FAMILIES.get(architecture.lower(), ())
    return [f for f in found if catalog.is_builtin_family(f)]


def size_in_billions(parameters: int) -> int | str:
    """A spec's `model_size_in_billions` for a parameter count: 7 for 7.0e9, '0_27' for 2.68e8."""
    billions = parameters / 1e9
    if billions >= 10:
        return round(billions)
    if billions >= 1:
        value = round(billions, 1)
    else:
        value = float(f"{billions:.2g}")
    if value == int(value):
        return int(value)
    return f"{value:.12f}".rstrip("0").replace(".", "_")  # (never 2.6e-07: a tiny test model's is 0_00000026)
