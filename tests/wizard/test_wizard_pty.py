"""The installed `xitui wizard` in a real pseudo-terminal, answered key by key as a person would."""

from __future__ import annotations

from pathlib import Path

import pexpect

from tests.conftest import run_env, xitui_cmd
from tests.server.conftest import ServerProcess
from xitui.client import Client


def test_wizard_in_a_terminal_registers_a_model_that_answers(server: ServerProcess, gguf_path: Path,
                                                             tmp_path: Path) -> None:
    cmd = xitui_cmd()
    child = pexpect.spawn(cmd[0], [*cmd[1:], "wizard", str(gguf_path), "-e", server.url], cwd=str(tmp_path),
                          env=run_env(TERM="xterm", COLUMNS="120", LINES="40"), encoding="utf-8", timeout=60,
                          dimensions=(40, 120))
    try:
        child.expect("Model type")
        child.send("\r")
        child.expect("Model name")
        child.send("pty-gemma\r")
        for question in ("Family", "Abilities", "Languages"):
            child.expect(question)
            child.send("\r")
        child.expect("Context length")
        child.send("2048\r")
        for question in ("Description", "Hub id", "Chat format", "Prompt style"):
            child.expect(question)
            child.send("\r")
        child.expect("start_of_turn")  # the preview
        child.expect("Use this chat format")
        child.send("\r")
        child.expect("ok: a valid LLM spec")
        child.expect("Review")
        child.send("\r")
        child.expect("What now")
        child.send("\x1b[B\x1b[B \r")  # everything but persisting
        child.expect("Save the spec to")
        child.send("\r")
        child.expect("launched pty-gemma")
        child.expect("Try a prompt")
        child.send("\r")
        child.expect("tokens/s")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0, child.before
    assert (tmp_path / "pty-gemma.json").is_file()
    client = Client(server.url)
    answer = client.get_model("pty-gemma").generate("The capital of France is", {"max_tokens": 4, "temperature": 0})
    assert answer["choices"][0]["text"]
    client.terminate_model("pty-gemma")
    client.unregister_model("LLM", "pty-gemma")


def test_ctrl_c_in_a_terminal_exits_130_with_one_line(server: ServerProcess, gguf_path: Path, tmp_path: Path) -> None:
    cmd = xitui_cmd()
    child = pexpect.spawn(cmd[0], [*cmd[1:], "wizard", str(gguf_path), "-e", server.url], cwd=str(tmp_path),
                          env=run_env(TERM="xterm"), encoding="utf-8", timeout=60, dimensions=(40, 120))
    child.expect("Model type")
    child.send("\r")
    child.expect("Model name")
    child.sendcontrol("c")
    child.expect("cancelled: nothing saved or registered")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    assert not list(tmp_path.iterdir())
