"""Embedding models and rerank models (cross-encoders) through sentence-transformers (safetensors weights, no
remote code)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from xitui import wire
from xitui.backends.base import Backend, model_path
from xitui.backends.device import best_device, set_torch_threads
from xitui.core.chat_format.input_size import cut
from xitui.core.errors import LaunchError


class SentenceTransformersBackend(Backend):
    """Embedding models on sentence-transformers (pooling and normalising as the model's folder says)."""

    def __init__(self) -> None:
        self.model: Any = None
        self.max_input_tokens = 512
        self.reranks = False

    def load(self, launch: wire.Settings, progress: Callable[[float, str], None]) -> wire.WorkerInfo:
        path = model_path(launch)
        if not os.path.isdir(path):
            raise LaunchError(f"model directory not found: {path}")
        progress(0.3, "importing sentence-transformers")
        set_torch_threads()
        from sentence_transformers import SentenceTransformer

        device = best_device()
        progress(0.6, "loading weights")
        if launch.get("model_type") == "rerank":
            return self._load_cross_encoder(path, device, int(launch.get("context_length") or 0))
        try:
            self.model = SentenceTransformer(path, device=device, trust_remote_code=False, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise LaunchError(f"sentence-transformers could not load {path}: {exc}") from None
        spec_max = int(launch.get("context_length") or 0)
        model_max = int(self.model.max_seq_length or spec_max or 512)
        self.max_input_tokens = min(spec_max, model_max) if spec_max else model_max
        self.model.max_seq_length = self.max_input_tokens
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        dims = dimension()
        return {"engine": "sentence_transformers", "device": device, "dimensions": dims,
                "context_length": self.max_input_tokens}

    def _load_cross_encoder(self, path: str, device: str, spec_max: int) -> wire.WorkerInfo:
        from sentence_transformers import CrossEncoder

        try:
            self.model = CrossEncoder(path, device=device, trust_remote_code=False, local_files_only=True,
                                      **({"max_length": spec_max} if spec_max else {}))
        except (OSError, ValueError) as exc:
            raise LaunchError(f"sentence-transformers could not load {path} as a cross-encoder: {exc}") from None
        if getattr(self.model, "num_labels", 1) != 1:
            raise LaunchError(f"{path} scores {self.model.num_labels} labels per pair, not one relevance score: "
                              "not a reranker")
        self.reranks = True
        self.max_input_tokens = int(self.model.max_length or spec_max or 512)
        return {"engine": "sentence_transformers", "device": device, "context_length": self.max_input_tokens}

    def warm_up(self) -> None:
        if self.reranks:
            self.rerank("warm-up", ["a document"])
        else:
            self.embed(["warm-up"])

    def rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        """One relevance score per document, in the documents' order: CrossEncoder.predict's (for a one-score
        model the sigmoid of its logit, 0 to 1), as Xinference's sentence-transformers reranker returns them;
        and the tokens read (the query once, then each document)."""
        texts, counts = self.as_read([query, *documents])
        scores = self.model.predict([(texts[0], doc) for doc in texts[1:]], batch_size=32, show_progress_bar=False,
                                    convert_to_numpy=True)
        return [float(s) for s in scores], sum(counts)

    def as_read(self, texts: list[str]) -> tuple[list[str], list[int]]:
        """Each text as far as the model reads it (its first max_input_tokens tokens), and its tokens with the
        special ones. Cut to a bounded number of characters first (core/input_size), so no tokenizer sees more;
        then, with a fast tokenizer, at the last token the model reads: a pair of long texts tokenized whole
        before truncation made every overflow window of one text with every window of the other (16 KiB each:
        350 MiB for one pair; 256 KiB texts reached the OOM killer). The pair's own truncation then gives the
        tokens it would have given the whole texts, but for one when both are longer than the model reads
        (which of the two keeps the odd token of its halved budget then follows their lengths as cut)."""
        limit = self.max_input_tokens
        texts = [cut(t, limit) for t in texts]
        tokenizer = self.model.tokenizer
        if not getattr(tokenizer, "is_fast", False):
            found = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=limit)
            return texts, [len(ids) for ids in found["input_ids"]]
        found = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=limit,
                          return_offsets_mapping=True)
        read = [text[:max(end for _, end in offsets)] if len(offsets) >= limit else text
                for text, offsets in zip(texts, found["offset_mapping"], strict=True)]
        specials = tokenizer.num_special_tokens_to_add(pair=False)
        return read, [min(len(ids) + specials, limit) for ids in found["input_ids"]]

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.model.tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def embed(self, texts: list[str]) -> Any:
        return self.model.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True,
                                 show_progress_bar=False)
