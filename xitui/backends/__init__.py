"""Backends run models inside a worker process; each one sits behind the small interface in `base`."""

from __future__ import annotations

from xitui.backends.base import Backend

ENGINES = {
    "llama.cpp": "xitui.backends.llamacpp:LlamaCppBackend",
    "transformers": "xitui.backends.transformers:TransformersBackend",
    "sentence_transformers": "xitui.backends.sentence_transformers:SentenceTransformersBackend",
    # a test engine: the server plans a launch on it only when started with XITUI_SCRIPTED_ENGINE=1
    "scripted": "xitui.backends.scripted:ScriptedBackend",
}


def load_backend(engine: str) -> Backend:
    """Import the backend for `engine` (heavy libraries load here, in the worker only)."""
    import importlib

    module_name, _, class_name = ENGINES[engine].partition(":")
    return getattr(importlib.import_module(module_name), class_name)()
