"""The wizard's tests use the server tests' real server and model files."""

from tests.server.conftest import gemma_pt_dir, gguf_path, server, small_gguf  # noqa: F401 - fixtures
