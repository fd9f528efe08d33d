"""The CLI tests use the server tests' real model files."""

from tests.server.conftest import gguf_path  # noqa: F401 - fixture
