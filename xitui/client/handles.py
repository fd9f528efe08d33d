"""Handles on running models, as `Client.get_model` returns them (Xinference's handle methods)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from xitui.client.transport import Transport

if TYPE_CHECKING:  # annotations only: the CLI does not import the wire's types to start
    from xitui import wire


class ModelHandle:
    """A running model of one server, as `Client.get_model` returns it."""

    def __init__(self, transport: Transport, model_uid: str, description: wire.ModelDescription):
        self.transport = transport
        self.model_uid = model_uid
        self.description = description

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model_uid}>"


class GenerateModelHandle(ModelHandle):
    """A model that continues text (`/v1/completions`)."""

    def generate(
        self, prompt: str, generate_config: dict[str, Any] | None = None, **kwargs: Any
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """A completion dict, or an iterator of chunks when generate_config has "stream": True."""
        body = {"model": self.model_uid, "prompt": prompt, **(generate_config or {}), **kwargs}
        return self.transport.inference("/v1/completions", body)


class ChatModelHandle(GenerateModelHandle):
    """A model with the chat ability: conversations (`/v1/chat/completions`) as well as completions."""

    def chat(
        self,
        messages: list[dict[str, Any]] | str,
        tools: list[dict[str, Any]] | None = None,
        generate_config: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> dict[str, Any] | Iterator[dict[str, Any]]:
        """A chat.completion dict, or an iterator of chunks when generate_config has "stream": True."""
        if isinstance(messages, str):  # older Xinference clients took one prompt string
            messages = [{"role": "user", "content": messages}]
        body: dict[str, Any] = {"model": self.model_uid, "messages": messages, **(generate_config or {}), **kwargs}
        if tools:
            body["tools"] = tools
        return self.transport.inference("/v1/chat/completions", body)


class EmbeddingModelHandle(ModelHandle):
    """An embedding model (`/v1/embeddings`)."""

    def create_embedding(self, input: str | list[str], **kwargs: Any) -> dict[str, Any]:
        body = {"model": self.model_uid, "input": input, **kwargs}
        return self.transport.post_json("/v1/embeddings", body)


class RerankModelHandle(ModelHandle):
    """A rerank model (`/v1/rerank`): the same call as Xinference's client."""

    def rerank(self, documents: list[str], query: str, top_n: int | None = None,
               max_chunks_per_doc: int | None = None, return_documents: bool | None = None,
               return_len: bool | None = None, **kwargs: Any) -> dict[str, Any]:
        """The documents by relevance to `query`, best first: {"results": [{"index", "relevance_score",
        "document"}], "meta"}."""
        body = {"model": self.model_uid, "documents": documents, "query": query, "top_n": top_n,
                "max_chunks_per_doc": max_chunks_per_doc, "return_documents": return_documents,
                "return_len": return_len, **kwargs}
        return self.transport.post_json("/v1/rerank", body)
