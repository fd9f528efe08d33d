"""Python client for xitui's server and Xinference clusters: the same calls as Xinference's client."""

from xitui.client.client import Client, ClientError
from xitui.client.handles import ChatModelHandle, EmbeddingModelHandle, GenerateModelHandle

RESTfulClient = Client

__all__ = ["Client", "ClientError", "RESTfulClient", "ChatModelHandle", "GenerateModelHandle", "EmbeddingModelHandle"]
