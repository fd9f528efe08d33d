"""Embedding models and rerank models (cross-encoders) through sentence-transformers (safetensors weights, no
remote code)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from xitui.backends.base import Backend
from xitui.backends.device import best_device, set_torch_threads
from xitui.core.errors import LaunchError


class SentenceTransformersBackend(Backend):
    """Embedding models on sentence-transformers (pooling and normalising as the model's folder says)."""

    def __init__(self) -> None:
        self.model: Any = None
        self.max_input_tokens = 512
        self.reranks = False

    def load(self, launch: dict[str, Any], progress: Callable[[float, str], None]) -> dict[str, Any]:
        path = launch["model_path"]
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

    def _load_cross_encoder(self, path: str, device: str, spec_max: int) -> dict[str, Any]:
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

    def rerank(self, query: str, documents: list[str]) -> list[float]:
        """One relevance score per document, in the documents' order: CrossEncoder.predict's (for a one-score
        model the sigmoid of its logit, 0 to 1), as Xinference's sentence-transformers reranker returns them."""
        scores = self.model.predict([(query, doc) for doc in documents], batch_size=32, show_progress_bar=False,
                                    convert_to_numpy=True)
        return [float(s) for s in scores]

    def token_counts(self, texts: list[str]) -> list[int]:
        return [len(ids) for ids in self.model.tokenizer(texts, add_special_tokens=True)["input_ids"]]

    def embed(self, texts: list[str]) -> Any:
        return self.model.encode(texts, batch_size=max(1, len(texts)), convert_to_numpy=True,
                                 show_progress_bar=False)
