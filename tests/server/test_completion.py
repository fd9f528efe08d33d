"""Shell completion (Typer's, `xitui --install-completion`): model names and running uids on Tab."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import xitui_cmd
from tests.server.conftest import ServerProcess, gguf_spec
from xitui.client import Client


def complete(words: str, endpoint: str) -> list[str]:
    """What bash would offer for the last word of `words` (Typer's bash completion protocol)."""
    env = {**os.environ, "_XITUI_COMPLETE": "complete_bash", "COMP_WORDS": words,
           "COMP_CWORD": str(len(words.split(" ")) - 1), "XITUI_ENDPOINT": endpoint}
    done = subprocess.run(xitui_cmd(), capture_output=True, text=True, env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    return [line for line in done.stdout.splitlines() if line]


def test_uids_and_names_complete_from_the_server(server: ServerProcess, small_gguf: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("tab-gemma", small_gguf))
    client.launch_model(model_name="tab-gemma", model_uid="tab-uid", n_parallel=1)
    try:
        assert "tab-uid" in complete("xitui terminate -u ", server.url)
        assert complete("xitui chat -u tab-", server.url) == ["tab-uid"]
        names = complete("xitui launch -n tab", server.url)
        assert names == ["tab-gemma"]  # a registration the server holds, persisted or not
        assert "demo-gemma3-270m" in complete("xitui launch -n demo-", server.url)
    finally:
        client.terminate_model("tab-uid")


def test_without_a_server_names_come_from_home_and_uids_are_none(xitui_home: Path) -> None:
    dead = "http://127.0.0.1:9"
    assert complete("xitui terminate -u ", dead) == []
    assert "llama-2-chat" in complete("xitui launch -n llama-2", dead)
    assert not (xitui_home / "server.json").exists(), "a completion started a server"
