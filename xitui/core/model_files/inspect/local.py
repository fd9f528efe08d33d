"""Probes of local model files: a GGUF file or folder, a transformers folder, a sentence-transformers folder,
a cross-encoder (reranker) folder.

Only headers and small JSON files are read: GGUF metadata, config.json, tokenizer_config.json,
generation_config.json, safetensors headers (for the parameter count), modules.json, the pooling config and
config_sentence_transformers.json.
"""

from __future__ import annotations

import json
import os
import struct
from math import prod
from pathlib import Path
from typing import Any

from xitui.core.errors import XituiError
from xitui.core.model_files import bounded_reads as bounded
from xitui.core.model_files.inspect.gguf_header import read_header
from xitui.core.model_files.inspect.naming import (
    families_for,
    file_name_template,
    model_name_from,
    quantization_in,
    size_in_billions,
)
from xitui.core.model_files.inspect.result import Inspection

GGUF = "GGUF metadata"


class InspectError(XituiError):
    """The source is not something xitui can serve (or cannot be read)."""


def read_json(path: Path) -> dict[str, Any] | None:
    """A small JSON file as a dict; None when it is missing, not a regular file, too large or not an object."""
    return bounded.read_json(path)


def inspect_local(path: Path, gguf_file: str | None = None) -> Inspection:
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise InspectError(f"{path}: not a .gguf file; point at a GGUF file or a model folder")
        return inspect_gguf(path.parent, path.name, str(path))
    if not path.is_dir():
        raise InspectError(f"{path}: no such file or folder")
    ggufs = [name for name in sorted(p.name for p in path.glob("*.gguf") if p.is_file()) if not is_projector(name)]
    if is_cross_encoder(path):
        return inspect_cross_encoder(path)
    if (path / "modules.json").is_file() or (path / "sentence_bert_config.json").is_file():
        return inspect_sentence_transformers(path)
    if (path / "config.json").is_file() and any(path.glob("*.safetensors")):
        return inspect_pytorch(path)
    if ggufs:
        return inspect_gguf(path, gguf_file or ggufs[0], str(path))
    if (path / "config.json").is_file():
        raise InspectError(f"{path}: has config.json but no .safetensors weights (xitui loads no pickled weights)")
    raise InspectError(f"{path}: no .gguf file, no config.json with safetensors, no sentence-transformers model")


def is_cross_encoder(folder: Path) -> bool:
    """A reranker's folder: sentence-transformers saved it as a CrossEncoder, or (older ones, BAAI's bge
    rerankers) its config.json is a sequence classifier with one output, the relevance score."""
    saved = read_json(folder / "config_sentence_transformers.json") or {}
    if saved.get("model_type") == "CrossEncoder":
        return True
    config = read_json(folder / "config.json") or {}
    architectures = config.get("architectures")
    if not (isinstance(architectures, list) and architectures
            and all(str(a).endswith("ForSequenceClassification") for a in architectures)):
        return False
    labels = config.get("id2label")
    count = len(labels) if isinstance(labels, dict) else config.get("num_labels")
    return count == 1


def is_projector(file_name: str) -> bool:
    """A multimodal projector's file, by the name every converter and hub gives one (mmproj-...gguf)."""
    return "mmproj" in file_name.lower()


def inspect_gguf(folder: Path, file_name: str, source: str) -> Inspection:
    """A GGUF file and its siblings: the header of the chosen file, quantizations from all file names, the
    projectors beside it (mmproj-*.gguf) that fit it."""
    every = sorted(p.name for p in folder.glob("*.gguf") if p.is_file())
    if file_name in every and is_projector(file_name):
        raise InspectError(f"{folder / file_name}: a multimodal projector, not a model: point at the model's GGUF "
                           "(the projector beside it is found)")
    siblings = [name for name in every if not is_projector(name)]
    if file_name not in siblings:
        raise InspectError(f"{folder / file_name}: no such GGUF file")
    header = read_header(folder / file_name)
    found = Inspection(source=source, kind="gguf", model_type="LLM", gguf_files=siblings)
    found.facts.update(
        file=str(folder / file_name), file_size=header.file_size, architecture=header.architecture,
        parameter_count=header.parameter_count, file_type=header.quantization, name=header.get("general.name"),
        layers=header.arch("block_count"), heads=header.arch("attention.head_count"),
        kv_heads=header.arch("attention.head_count_kv") or header.arch("attention.head_count"),
        key_length=header.arch("attention.key_length"), value_length=header.arch("attention.value_length"),
        embedding_length=header.arch("embedding_length"), context_length=header.arch("context_length"),
        bos_token=header.tokens.get(header.get("tokenizer.ggml.bos_token_id")),
        eos_token=header.tokens.get(header.get("tokenizer.ggml.eos_token_id")),
    )
    found.propose("model_format", "ggufv2", "file type")
    found.propose("model_uri", f"file://{folder.resolve()}", "the file's folder")
    # the other files that share this file's name pattern are further quantizations of the same model
    own = quantization_in(file_name)
    same = [n for n in siblings if own and (q := quantization_in(n)) and (q[0], q[2]) == (own[0], own[2])]
    derived = file_name_template(same or [file_name])
    if derived is not None:
        template, quants = derived
        chosen = own[1] if own else quants[0]
        found.propose("model_file_name_template", template, "the file names")
        found.propose("quantization", chosen, "the file name")
        found.propose("quantizations", [chosen] + [q for q in quants if q != chosen], "the file names")
    else:  # the file name carries no quantization: it is the template, the header says which one
        found.propose("model_file_name_template", file_name, "the file name")
        found.propose("quantization", (header.quantization or "unknown").lower(), GGUF)
    _propose_llm_common(found, header.architecture, GGUF)
    found.propose("model_name", model_name_from(file_name), "the file name")
    if header.parameter_count:
        found.propose("model_size_in_billions", size_in_billions(header.parameter_count), f"{GGUF} (tensor shapes)")
    if isinstance(header.arch("context_length"), int):
        found.propose("context_length", header.arch("context_length"), GGUF)
    template = header.get("tokenizer.chat_template")
    if isinstance(template, str) and template.strip():
        found.propose("chat_template", template, GGUF)
    ids = [header.get(k) for k in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id")]
    ids = list(dict.fromkeys(i for i in ids if isinstance(i, int)))
    if ids:
        found.propose("stop_token_ids", ids, GGUF)
        words = [header.tokens[i] for i in ids if header.tokens.get(i)]
        if words:
            found.propose("stop", words, GGUF)
    name = header.get("general.name")
    quant = found.value("quantization")
    if name:
        found.propose("model_description", f"{name}, GGUF {quant}", GGUF)
    _propose_projectors(found, folder, [n for n in every if is_projector(n)], header.arch("embedding_length"))
    repo = header.get("general.source.huggingface.repository") or header.get("general.base_model.0.repo_url")
    if isinstance(repo, str) and repo.count("/") >= 1:
        found.propose("model_id", "/".join(repo.rstrip("/").split("/")[-2:]), GGUF)
    _propose_abilities(found)
    return found


def inspect_pytorch(folder: Path) -> Inspection:
    """A transformers folder: config.json, tokenizer_config.json, generation_config.json, safetensors headers."""
    config = read_json(folder / "config.json") or {}
    found = Inspection(source=str(folder), kind="pytorch", model_type="LLM")
    nested = config.get("text_config")
    text_config: dict[str, Any] = nested if isinstance(nested, dict) else config
    arch = config.get("model_type")
    parameters = safetensors_parameters(folder)
    heads = text_config.get("num_attention_heads")
    hidden = text_config.get("hidden_size")
    found.facts.update(
        architecture=arch, architectures=config.get("architectures"), parameter_count=parameters,
        dtype=config.get("torch_dtype") or config.get("dtype"), layers=text_config.get("num_hidden_layers"),
        heads=heads, kv_heads=text_config.get("num_key_value_heads") or heads,
        key_length=text_config.get("head_dim") or (hidden // heads if hidden and heads else None),
        embedding_length=hidden, context_length=text_config.get("max_position_embeddings"),
        weights_size=sum(p.stat().st_size for p in folder.glob("*.safetensors")),
    )
    found.propose("model_format", "pytorch", "config.json")
    found.propose("quantization", "none", "safetensors weights")
    if isinstance(config.get("vision_config"), dict):  # a vision tower of its own: it reads images
        found.facts["projector_reads"] = ["vision"]
    found.propose("model_uri", f"file://{folder.resolve()}", "the folder")
    found.propose("model_name", model_name_from(folder.name), "the folder name")
    _propose_llm_common(found, arch, "config.json")
    if parameters:
        found.propose("model_size_in_billions", size_in_billions(parameters), "safetensors headers")
    if isinstance(found.facts["context_length"], int):
        found.propose("context_length", found.facts["context_length"], "config.json")
    tok = read_json(folder / "tokenizer_config.json") or {}
    template = tok.get("chat_template")
    if isinstance(template, list):  # named templates: the default one
        template = next((t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"),
                        None)
    if not template and (folder / "chat_template.jinja").is_file():
        template = bounded.read_text(folder / "chat_template.jinja")
    if isinstance(template, str) and template.strip():
        found.propose("chat_template", template, "tokenizer_config.json")
    generation = read_json(folder / "generation_config.json") or {}
    eos = generation.get("eos_token_id", config.get("eos_token_id"))
    ids = [eos] if isinstance(eos, int) else [i for i in eos or [] if isinstance(i, int)]
    if ids:
        origin = "generation_config.json" if "eos_token_id" in generation else "config.json"
        found.propose("stop_token_ids", ids, origin)
    eos_text = tok.get("eos_token")
    eos_text = eos_text.get("content") if isinstance(eos_text, dict) else eos_text
    bos_text = tok.get("bos_token")
    found.facts.update(eos_token=eos_text if isinstance(eos_text, str) else None,
                       bos_token=(bos_text.get("content") if isinstance(bos_text, dict) else bos_text) or None)
    if isinstance(eos_text, str) and eos_text:
        found.propose("stop", [eos_text], "tokenizer_config.json")
    source_id = config.get("_name_or_path")
    if isinstance(source_id, str) and source_id.count("/") == 1 and not source_id.startswith("/"):
        found.propose("model_id", source_id, "config.json")
    _propose_abilities(found)
    return found


def inspect_sentence_transformers(folder: Path) -> Inspection:
    """A sentence-transformers folder: dimensions from the last Dense or the pooling layer, max tokens."""
    found = Inspection(source=str(folder), kind="sentence-transformers", model_type="embedding")
    modules: Any = bounded.read_json_value(folder / "modules.json") or []
    config = read_json(folder / "config.json") or {}
    dims: tuple[int, str] | None = None
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", ""))
        module_config = read_json(folder / module.get("path", "") / "config.json") or {}
        if kind.endswith("Pooling") and isinstance(module_config.get("word_embedding_dimension"), int):
            dims = (module_config["word_embedding_dimension"], f"{module.get('path')}/config.json")
        elif kind.endswith("Dense") and isinstance(module_config.get("out_features"), int):
            dims = (module_config["out_features"], f"{module.get('path')}/config.json")
    if dims is None and isinstance(config.get("hidden_size"), int):
        dims = (config["hidden_size"], "config.json")
    if dims:
        found.propose("dimensions", dims[0], dims[1])
    st_config = read_json(folder / "sentence_bert_config.json") or {}
    if isinstance(st_config.get("max_seq_length"), int):
        found.propose("max_tokens", st_config["max_seq_length"], "sentence_bert_config.json")
    elif isinstance(config.get("max_position_embeddings"), int):
        found.propose("max_tokens", config["max_position_embeddings"], "config.json")
    found.facts.update(architecture=config.get("model_type"), parameter_count=safetensors_parameters(folder),
                       modules=[str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules if isinstance(m, dict)])
    _propose_name_and_place(found, folder)
    return found


def inspect_cross_encoder(folder: Path) -> Inspection:
    """A cross-encoder folder (a rerank model): the longest pair it reads, its architecture and size."""
    found = Inspection(source=str(folder), kind="cross-encoder", model_type="rerank")
    config = read_json(folder / "config.json") or {}
    st_config = read_json(folder / "sentence_bert_config.json") or {}
    if isinstance(st_config.get("max_seq_length"), int):
        found.propose("max_tokens", st_config["max_seq_length"], "sentence_bert_config.json")
    elif isinstance(config.get("max_position_embeddings"), int):
        found.propose("max_tokens", config["max_position_embeddings"], "config.json")
    found.propose("type", "normal", "a cross-encoder")
    found.facts.update(architecture=config.get("model_type"), architectures=config.get("architectures"),
                       parameter_count=safetensors_parameters(folder),
                       weights_size=sum(p.stat().st_size for p in folder.glob("*.safetensors")))
    _propose_name_and_place(found, folder)
    return found


def _propose_name_and_place(found: Inspection, folder: Path) -> None:
    """A sentence-transformers folder's Hub id (from its README), languages, location and name."""
    readme = folder / "README.md"
    model_id = _model_id_from_readme(readme) if readme.is_file() else None
    if model_id:
        found.propose("model_id", model_id, "README.md")
    found.propose("language", ["en"], "default")
    found.propose("model_uri", f"file://{folder.resolve()}", "the folder")
    if folder.name in ("model", "snapshot") or len(folder.name) == 40:  # a package's or the HF cache's inner folder
        if model_id:
            found.propose("model_name", model_name_from(model_id), "README.md")
        else:
            found.propose("model_name", model_name_from(folder.parent.name), "the parent folder's name")
    else:
        found.propose("model_name", model_name_from(folder.name), "the folder name")


#: Largest safetensors JSON header read (the format's own limit is 100 MB; real ones are a few MiB at most).
MAX_SAFETENSORS_HEADER = 64 * 2**20


def safetensors_parameters(folder: Path) -> int:
    """Parameters in a folder's safetensors files, from their JSON headers (no weights read)."""
    total = 0
    for file in folder.glob("*.safetensors"):
        try:
            fd = bounded.open_regular(file)
            with os.fdopen(fd, "rb") as fh:
                (length,) = struct.unpack("<Q", fh.read(8))
                if length > MAX_SAFETENSORS_HEADER:
                    continue
                header = json.loads(fh.read(length))
            if not isinstance(header, dict):
                continue
        except (OSError, struct.error, ValueError, RecursionError, XituiError):
            continue
        total += sum(prod(t["shape"]) for k, t in header.items()
                     if k != "__metadata__" and isinstance(t, dict) and isinstance(t.get("shape"), list)
                     and all(isinstance(d, int) and d >= 0 for d in t["shape"]))
    return total


def _propose_llm_common(found: Inspection, architecture: str | None, origin: str) -> None:
    families = families_for(architecture)
    found.facts["families"] = families
    found.propose("model_family", families[0] if families else "other",
                  f"architecture {architecture}" if families else "no builtin family for this architecture")
    found.propose("model_lang", ["en"], "default")


def projector_facts(path: Path) -> dict[str, Any]:
    """What a projector's header says: the inputs it reads and the width of what it hands the model."""
    header = read_header(path, token_ids=())
    vision, audio = bool(header.get("clip.has_vision_encoder")), bool(header.get("clip.has_audio_encoder"))
    width = header.get("clip.vision.projection_dim") if vision else header.get("clip.audio.projection_dim")
    return {"vision": vision, "audio": audio, "width": width if isinstance(width, int) else None,
            "is_projector": header.architecture == "clip"}


def _propose_projectors(found: Inspection, folder: Path, names: list[str], model_width: Any) -> None:
    """The projectors beside the model that fit it (their output width is the model's embedding width): one is
    proposed as is, several are asked about (the wizard's projector step); they add `vision` (and `audio`)."""
    fitting: list[str] = []
    reads: set[str] = set()
    for name in names:
        try:
            facts = projector_facts(folder / name)
        except XituiError:
            continue
        if not facts["is_projector"] or (facts["width"] and model_width and facts["width"] != model_width):
            found.facts.setdefault("projectors_not_fitting", []).append(name)
            continue
        fitting.append(name)
        reads |= {kind for kind in ("vision", "audio") if facts[kind]}
    if not fitting:
        return
    # the f16 file first where there are several: the precision the converters write by default
    fitting.sort(key=lambda n: (not n.lower().endswith("f16.gguf"), n))
    found.facts["projectors"] = fitting
    found.propose("multimodal_projectors", fitting[:1], "the projector beside the model" if len(fitting) == 1
                  else f"one of {len(fitting)} projectors beside the model")
    found.facts["projector_reads"] = sorted(reads)


def _settle_family(found: Inspection) -> None:
    """Where the model has a chat template of its own, the family proposed is one whose chat format is the
    template's: a family of the architecture that writes another format (SmolLM2 is a llama that speaks ChatML,
    not Llama 3's) would bring that format's tool parser and stop words. None such: `other`."""
    from xitui.core.chat_format.markers import format_of, style_format
    from xitui.core.specs import catalog

    own = format_of(found.value("chat_template"))
    family = found.value("model_family")
    if not own or not family or family == "other":
        return
    if style_format(catalog.family_prompt_style(family)) in (own, None):
        return
    matching = [f for f in found.facts.get("families") or []
                if style_format(catalog.family_prompt_style(f)) == own]
    found.propose("model_family", matching[0] if matching else "other",
                  f"its chat template writes {own}, family {family}'s format is not that")


def _propose_abilities(found: Inspection) -> None:
    """Chat when the model has a template or its family a prompt style; generate always. A family's style
    is written into the spec with its stop words added to the model's own, so the spec says what it does."""
    from xitui.core.specs import catalog

    _settle_family(found)
    family = found.value("model_family")
    style = catalog.family_prompt_style(family) if family and family != "other" else None
    fields = catalog.style_fields(style) if style else None
    if fields:
        style = fields["style_name"]
    template = found.value("chat_template")
    seen = found.facts.get("projector_reads") or []
    if template:
        found.propose("model_ability", ["generate", "chat", *template_abilities(template), *seen],
                      "the model's chat template" + (f" and what it reads ({', '.join(seen)})" if seen else ""))
        _propose_template_fields(found, template)
    elif style:
        found.propose("model_ability", ["generate", "chat", *seen], f"family {family}'s prompt style {style}")
        found.propose("prompt_style", style, f"family {family}")
        add_style_stops(found, style)
    else:
        found.propose("model_ability", ["generate"], "no chat template or prompt style")


def template_abilities(template: str) -> list[str]:
    """What a chat template shows the model does besides chatting: calling tools (it renders the tools it
    is given), thinking (it knows a reasoning tag)."""
    from xitui.core.chat_format import tool_calls
    from xitui.core.chat_format.reasoning import DEFAULT_TAGS

    found = []
    if tool_calls.template_takes_tools(template):
        found.append("tools")
    if DEFAULT_TAGS[0] in template or "reasoning_content" in template:
        found.append("reasoning")
    return found


def _propose_template_fields(found: Inspection, template: str) -> None:
    """The tool-call format and the reasoning tags, when the template shows them."""
    from xitui.core.chat_format import tool_calls
    from xitui.core.chat_format.reasoning import DEFAULT_TAGS

    abilities = template_abilities(template)
    if "tools" in abilities:
        fmt = tool_calls.detect(template)
        if fmt != "hermes" or "<tool_call>" in template:
            found.propose("tool_parser", fmt, "the model's chat template")
    if "reasoning" in abilities and DEFAULT_TAGS[0] in template:
        found.propose("reasoning_start_tag", DEFAULT_TAGS[0], "the model's chat template")
        found.propose("reasoning_end_tag", DEFAULT_TAGS[1], "the model's chat template")


def add_style_stops(found: Inspection, style_name: str) -> None:
    """The style's stop words and ids added to those the model's files gave."""
    from xitui.core.specs import catalog
    stop, ids = catalog.with_style_stops(found.value("stop"), found.value("stop_token_ids"), style_name)
    for key, merged in (("stop", stop), ("stop_token_ids", ids)):
        if merged and merged != found.value(key):
            found.propose(key, merged, found.origin(key) or f"prompt style {style_name}")


def _model_id_from_readme(readme: Path) -> str | None:
    import re

    head = bounded.read_head(readme, 80_000)
    if head is None:
        return None
    text = head.decode("utf-8", errors="replace")[:20000]
    match = re.search(r"SentenceTransformer\(['\"]([A-Za-z0-9][\w.\-]*/[\w.\-]+)['\"]\)", text)
    if match:
        return match.group(1)
    not_models = "(?!(?:datasets|blog|docs|spaces|papers|models)/)"  # the site's other pages
    match = re.search(r"huggingface\.co/" + not_models + r"([A-Za-z0-9][\w.\-]*/[\w.\-]+)", text)
    return match.group(1).rstrip(".") if match else None
