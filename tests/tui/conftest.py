"""The dashboard's tests use the server tests' real server and model files."""

from tests.server.conftest import gguf_path, server  # noqa: F401 - fixtures
