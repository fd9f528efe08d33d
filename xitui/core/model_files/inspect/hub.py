"""Probe a Hugging Face Hub repository: its file list and its small config files, never its weights."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from xitui.core.model_files.inspect.local import (
    inspect_cross_encoder,
    inspect_pytorch,
    inspect_sentence_transformers,
    is_cross_encoder,
)
from xitui.core.model_files.inspect.naming import file_name_template, model_name_from
from xitui.core.model_files.inspect.result import Inspection

#: The only files fetched: configuration, never weights.
SMALL_FILES = ("config.json", "tokenizer_config.json", "generation_config.json", "chat_template.jinja",
               "modules.json", "sentence_bert_config.json", "1_Pooling/config.json", "README.md",
               "config_sentence_transformers.json")


def inspect_hub(model_id: str, revision: str | None = None) -> Inspection:
    """What the Hub says about `model_id`; offline or unreachable, a note and the name only."""
    from huggingface_hub import HfApi, hf_hub_download
    from huggingface_hub.errors import OfflineModeIsEnabled, RepositoryNotFoundError

    from xitui.core.model_files.download import cache_dir

    # read now, not when huggingface_hub was imported (it fixes its endpoint at import)
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    bare = Inspection(source=model_id, kind="hub", model_type="LLM")
    bare.propose("model_id", model_id, "the Hub id you gave")
    bare.propose("model_name", model_name_from(model_id), "the Hub id")
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        bare.notes.append("offline (HF_HUB_OFFLINE is set): the Hub was not asked; answers not pre-filled")
        return bare
    try:
        info = HfApi(endpoint=endpoint).model_info(model_id, revision=revision or "main", files_metadata=True)
    except RepositoryNotFoundError:
        bare.notes.append(f"{model_id} was not found on {endpoint} (private? set HF_TOKEN); answers not pre-filled")
        return bare
    except OfflineModeIsEnabled:
        bare.notes.append("offline (HF_HUB_OFFLINE is set): the Hub was not asked; answers not pre-filled")
        return bare
    except Exception as exc:  # noqa: BLE001 - any network failure (httpx's, the Hub's): go on without it
        why = " ".join(str(exc).split())[:120]
        bare.notes.append(f"offline: {endpoint} cannot be reached ({why}); answers not pre-filled")
        return bare
    files = {s.rfilename: s.size for s in info.siblings or []}
    with tempfile.TemporaryDirectory(prefix="xitui-inspect-") as tmp:
        folder = Path(tmp)
        for name in SMALL_FILES:
            if name in files:
                try:
                    fetched = hf_hub_download(model_id, name, revision=revision or "main", cache_dir=str(cache_dir()),
                                              endpoint=endpoint)
                except Exception:  # noqa: BLE001 - a file that will not come is a field left to ask
                    continue
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(Path(fetched).read_bytes())
        ggufs = sorted(n for n in files if n.lower().endswith(".gguf") and "/" not in n)
        weights = [n for n in files if n.endswith(".safetensors")]
        if weights and is_cross_encoder(folder):
            found = inspect_cross_encoder(folder)
            found.facts["weights_size"] = sum(files[n] or 0 for n in weights)
        elif (folder / "modules.json").is_file() or (folder / "sentence_bert_config.json").is_file():
            found = inspect_sentence_transformers(folder)
        elif (folder / "config.json").is_file() and weights:
            for name in weights:  # stand-ins, so the probe sees which weights exist; sizes come from the list
                (folder / name).parent.mkdir(parents=True, exist_ok=True)
                (folder / name).write_bytes(b"")
            found = inspect_pytorch(folder)
            found.facts["weights_size"] = sum(files[n] or 0 for n in weights)
            total = getattr(getattr(info, "safetensors", None), "total", None)
            if total:
                from xitui.core.model_files.inspect.naming import size_in_billions

                found.facts["parameter_count"] = total
                found.propose("model_size_in_billions", size_in_billions(total), "the Hub's safetensors summary")
        elif ggufs:
            found = _gguf_repo(model_id, ggufs, files)
        else:
            bare.notes.append(f"{model_id} has no .gguf or .safetensors files xitui can serve")
            return bare
    found.source, found.kind = model_id, "hub"
    found.proposals.pop("model_uri", None)  # the stand-in folder; a Hub model downloads by model_id
    found.propose("model_id", model_id, "the Hub id you gave")
    found.propose("model_name", model_name_from(model_id), "the Hub id")
    found.facts["files"] = files
    return found


def _gguf_repo(model_id: str, ggufs: list[str], files: dict[str, int | None]) -> Inspection:
    """A repository of GGUF files: quantizations and the file name template from the names alone."""
    from xitui.core.model_files.inspect.local import _propose_abilities, _propose_llm_common

    found = Inspection(source=model_id, kind="hub", model_type="LLM", gguf_files=ggufs)
    found.propose("model_format", "ggufv2", "the repository's files")
    derived = file_name_template(ggufs)
    if derived is None:  # the first file alone: its quantization, if its name tells one
        derived = file_name_template([ggufs[0]]) or (ggufs[0], ["unknown"])
    template, quants = derived
    found.propose("model_file_name_template", template, "the file names")
    found.propose("quantization", quants[0], "the file names")
    found.propose("quantizations", quants, "the file names")
    _propose_llm_common(found, None, "the Hub")
    _propose_abilities(found)
    found.notes.append("GGUF headers are not read from the Hub (that needs the file): context length and chat "
                       "template are not pre-filled")
    found.facts["file_size"] = files.get(ggufs[0])
    return found
