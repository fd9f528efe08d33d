"""Read a model's own files (or its Hub repository's small files) and propose a spec: the wizard's and
`xitui inspect`'s probes. No weights are loaded and no model library is imported."""

from __future__ import annotations

import os
from pathlib import Path

from xitui.core.model_files.inspect.local import InspectError
from xitui.core.model_files.inspect.result import Inspection, Proposal
from xitui.core.specs.names import MODEL_ID_RE

__all__ = ["InspectError", "Inspection", "Proposal", "inspect_source", "looks_like_hub_id"]


def looks_like_hub_id(source: str) -> bool:
    """`org/name` that is not a path on this machine."""
    return bool(MODEL_ID_RE.fullmatch(source)) and not os.path.exists(source) and not source.startswith((".", "/", "~"))


def inspect_source(source: str, gguf_file: str | None = None) -> Inspection:
    """Inspect a `.gguf` file, a folder (GGUF files, transformers, sentence-transformers) or a Hub id.

    `gguf_file` picks one file in a folder of several (default: the first by name)."""
    text = source.strip()
    if text.startswith("file://"):
        text = text[len("file://"):]
    if looks_like_hub_id(text):
        from xitui.core.model_files.inspect.hub import inspect_hub

        return inspect_hub(text)
    from xitui.core.model_files.inspect.local import inspect_local

    return inspect_local(Path(text).expanduser(), gguf_file)
