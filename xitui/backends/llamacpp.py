"""GGUF models through llama-cpp-python (in-process, in the worker)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from xitui import wire
from xitui.backends import guidance
from xitui.backends.base import Backend, RequestError, model_path
from xitui.backends.device import default_threads
from xitui.core.errors import LaunchError


class LlamaCppBackend(Backend):
    """GGUF models on llama-cpp-python: its Llama reads the file and tokenizes, the batch engine
    (llamacpp_batch.py) decodes every request, alone or several at once, in one shared KV cache."""

    engine_name = "llama.cpp"
    lazy_grammars = True

    def __init__(self) -> None:
        self.llm: Any = None
        self._guide_tokenizer: Any = None
        self._guide_failed = ""
        self._vocab_model: Any = None
        #: The model in llama.cpp's embedding mode, for a spec with the `embed` ability (made at its first use).
        self._embedder: Any = None
        self._embed_lock = threading.Lock()
        self._path = ""
        self._threads = 1
        #: The projector, for a vision model (launch "projector"): images read into the batch engine's slots.
        self.media: Any = None

    def load(self, launch: wire.Settings, progress: Callable[[float, str], None]) -> wire.WorkerInfo:
        import llama_cpp

        path = self._path = model_path(launch)
        if not os.path.isfile(path):
            raise LaunchError(f"model file not found: {path}")
        with open(path, "rb") as fh:
            if fh.read(4) != b"GGUF":
                raise LaunchError(f"{path} is not a GGUF file (llama.cpp reads GGUF only)")
        gpu = bool(llama_cpp.llama_supports_gpu_offload())
        n_gpu_layers = launch.get("n_gpu_layers", -1 if gpu else 0)
        threads = int(launch.get("n_threads") or default_threads())
        slots = max(1, int(launch.get("n_parallel") or 1))  # the server chose the count (core/machine/estimate.py)
        context = launch["context_length"] or 2048  # (the server always names one)
        progress(0.5, "loading weights")
        # llguidance's view of the vocabulary is made while llama.cpp reads the weights (that read lets go of
        # Python's lock; making the view holds it for a second or more on a 262k vocabulary: made later, it
        # would stall every stream of the batch once)
        # (the vocabulary is read first, here: llama-cpp-python quiets llama.cpp by pointing fds 1 and 2
        # elsewhere while it loads, and two loads at once left the worker's log pointing at /dev/null)
        try:
            self._vocab_model = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
        except (ValueError, RuntimeError) as exc:
            raise LaunchError(f"llama.cpp could not load {path}: {exc}") from None
        guide = threading.Thread(target=self._make_guide, daemon=True, name="grammar-vocabulary")
        guide.start()
        try:
            self.llm = llama_cpp.Llama(
                model_path=path,
                n_ctx=64,  # the batch engine holds the real context; this one's only for the settings
                n_threads=threads,
                n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise LaunchError(f"llama.cpp could not load {path}: {exc}") from None
        meta = self.llm.metadata or {}
        self.model_chat_template = meta.get("tokenizer.chat_template")
        self.bos_token = self._token_text(self.llm.token_bos())
        self.eos_token = self._token_text(self.llm.token_eos())
        from xitui.backends.llamacpp_batch import BatchEngine

        try:
            self.engine = BatchEngine(self.llm, slots, context, threads, self.send,
                                      speculative=launch.get("speculative", "off") == "ngram")
        except RuntimeError as exc:
            raise LaunchError(f"{exc} ({context} tokens of KV cache for {slots} slots: try a smaller "
                              "context_length)") from None
        guide.join()
        self._threads = threads
        projector = launch.get("projector")
        if projector:
            from xitui.backends.llamacpp_media import Media

            progress(0.9, "loading the projector")
            self.media = self.engine.media = Media(projector, self.llm, threads)
            self.image_marker = self.media.marker
        self.max_input_tokens = min(self.engine.slot_context, EMBED_CONTEXT)
        return {
            "n_parallel": slots,
            "engine": "llama.cpp",
            "speculative": "ngram" if self.engine.speculative else "off",
            "device": "gpu" if gpu and n_gpu_layers != 0 else "cpu",
            "n_gpu_layers": n_gpu_layers,
            "n_threads": threads,
            "context_length": self.engine.slot_context,
            "kv_cells": self.engine.pool,
            "eos_token_id": self.llm.token_eos(),
            **({"projector": os.path.basename(projector or ""),
                "reads": [kind for kind, yes in (("images", self.media.vision), ("audio", self.media.audio)) if yes]}
               if self.media else {}),
        }

    def prompt_tokens(self, prompt: str) -> list[int]:
        if self.bos_token and prompt.startswith(self.bos_token):
            prompt = prompt[len(self.bos_token):]
        tokens = self.llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        if not tokens and self.llm.token_bos() >= 0:
            # an empty prompt to a model that adds no start-of-text token (SmolLM2): it writes from that token
            # (an empty list failed the whole batch's step: every client's request got a 500)
            tokens = [self.llm.token_bos()]
        return tokens

    def prompt_media(self, prompt: str, images: list[bytes]) -> tuple[list[int], dict[int, Any]]:
        """A prompt with images: its tokens (each image's cells as a placeholder) and the images by where they
        start (backends/llamacpp_media.py)."""
        if self.media is None:
            raise RequestError("this model reads no images: its spec names no multimodal projector")
        if self.bos_token and prompt.startswith(self.bos_token):
            prompt = prompt[len(self.bos_token):]
        return self.media.tokenize(prompt, images, add_bos=True)

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def special_stop_ids(self, words: list[str]) -> set[int]:
        """Stop words that are control tokens (<end_of_turn>...) never appear in the text: stop on their ids."""
        ids = set()
        for word in words:
            tokens = self.llm.tokenize(word.encode("utf-8"), add_bos=False, special=True)
            if len(tokens) == 1 and not self.llm.detokenize(tokens, special=False):
                ids.add(tokens[0])
        return ids

    def grammar_for(self, constraint: wire.Constraint) -> guidance.Guide:
        """What holds one answer to the form (its llguidance matcher), checked against this model's vocabulary
        and the limits that keep one request from costing others (backends/guidance.py). Made where the
        request is prepared: a large grammar takes its time there, not on the engine's thread."""
        tokenizer = self._guide()
        return guidance.Guide(tokenizer, guidance.compile_for(constraint, tokenizer))

    def _guide(self) -> Any:
        """llguidance's view of the vocabulary (made at load)."""
        if self._guide_tokenizer is None:
            raise RequestError(f"grammars are not available for this model ({self._guide_failed})")
        return self._guide_tokenizer

    def _make_guide(self) -> None:
        """From the file's vocabulary alone, kept as long as the view: llguidance tokenizes through it."""
        try:
            self._guide_tokenizer = guidance.llama_tokenizer(llama_cpp_vocab(self._vocab_model))
        except Exception as exc:  # a vocabulary llguidance cannot read: grammars are refused, text still served
            self._guide_failed = f"{type(exc).__name__}: {exc}"


    # --- vectors from the LLM itself (a spec with the `embed` ability) ---------------------------------------

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False)) for text in texts]

    def embed(self, texts: list[str]) -> Any:
        """One vector per text, pooled as the file's metadata says (mean where it says nothing), unit length:
        llama.cpp's embedding mode on a second context of the same file (its pages are shared)."""
        import numpy as np

        for i, text in enumerate(texts):  # no token at all: llama.cpp would decode an empty batch
            if not self.llm.tokenize(text.encode("utf-8"), add_bos=True, special=False):
                raise RequestError(f"input[{i}]: an empty text has no vector on this model")
        with self._embed_lock:
            vectors = self._embedding_model().embed(texts, normalize=True, truncate=True)
        return np.asarray(vectors, dtype=np.float32)

    def _embedding_model(self) -> Any:
        if self._embedder is None:
            import llama_cpp

            meta = self.llm.metadata or {}
            declared = meta.get(f"{meta.get('general.architecture', '')}.pooling_type")
            pooling = int(declared) if declared and str(declared).isdigit() and int(declared) > 0 \
                else llama_cpp.LLAMA_POOLING_TYPE_MEAN
            self._embedder = llama_cpp.Llama(
                model_path=self._path, embedding=True, pooling_type=pooling, n_ctx=self.max_input_tokens,
                n_batch=self.max_input_tokens, n_ubatch=self.max_input_tokens, n_threads=self._threads,
                n_threads_batch=self._threads, n_gpu_layers=0, verbose=False)
        return self._embedder


#: The longest text an LLM's `embed` reads, in tokens (its own context, up to this).
EMBED_CONTEXT = 2048


def llama_cpp_vocab(llm: Any) -> Any:
    import llama_cpp

    return llama_cpp.llama_model_get_vocab(llm._model.model)
