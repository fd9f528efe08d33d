"""The dashboard's tests use the server tests' servers: the real one with real model files (slow), and the one
whose models are scripted (quick)."""

from tests.server.conftest import gguf_path, scripted, server, small_gguf  # noqa: F401 - fixtures
