"""`xitui chat` and `xitui generate` as a person uses them: in a real pseudo-terminal (pexpect) against a
real server running the bundled GGUF; and in a pipe, where only the generated text comes out."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest

from tests.conftest import run_env, xitui_cmd
from tests.server.conftest import ServerProcess, gguf_spec
from xitui.client import Client
from xitui.core.saved_chats import ChatStore

GROCERIES = ["# Groceries", "", "- eggs", "- milk"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def chat_server(tmp_path_factory: pytest.TempPathFactory, gguf_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("chat-home"))
    client = Client(srv.url)
    client.register_model("LLM", gguf_spec("talker", gguf_path))
    client.launch_model(model_name="talker")
    yield srv
    srv.stop()


def spawn(args: list[str], home: Path) -> pexpect.spawn:
    cmd = xitui_cmd()
    return pexpect.spawn(cmd[0], [*cmd[1:], *args], env=run_env(TERM="xterm", COLUMNS="100", LINES="40",
                                                                 XITUI_HOME=str(home)),
                         encoding="utf-8", timeout=60, dimensions=(40, 100))


def in_flight(url: str) -> int:
    return Client(url).describe_model("talker")["metrics"]["in_flight"]


def wait_streaming(url: str, request: int) -> None:
    """Until the server runs request number `request` (and only it), then a moment for some tokens."""
    deadline = time.monotonic() + 10
    while True:
        metrics = Client(url).describe_model("talker")["metrics"]
        if metrics["requests"] >= request and metrics["in_flight"] == 1:
            break
        assert time.monotonic() < deadline, metrics
        time.sleep(0.05)
    time.sleep(0.4)


def test_chat_in_a_terminal_history_commands_ctrl_c_and_resume(chat_server: ServerProcess, tmp_path: Path) -> None:
    url = chat_server.url
    child = spawn(["chat", "-u", "talker", "-e", url, "--temperature", "0", "--max-tokens", "12"], tmp_path)
    try:
        child.expect("you>")
        child.send("Name three colours.\r")
        child.expect(r"first token \d+ ms · [\d.]+ tokens/s · 12 tokens")  # the dim line after the answer
        child.expect("you>")
        child.send("/set max_tokens 400\r")
        child.expect("max_tokens = 400")
        child.expect("you>")
        child.send("Tell me a long story.\r")
        wait_streaming(url, request=2)
        child.sendintr()
        child.expect(r"tokens · stopped")
        child.expect("you>")
        deadline = time.monotonic() + 3
        while in_flight(url):  # the server cancelled the generation
            assert time.monotonic() < deadline
            time.sleep(0.05)
        child.send("/system You are terse.\r")
        child.expect("system prompt set")
        child.expect("you>")
        child.send("\x1b[A\x1b[A")  # ↑ ↑ recalls the input before the last
        child.expect("Tell me a long story.")
        child.send("\x15")  # Ctrl-U: clear the recalled line
        child.send("/help\r")
        child.expect("/export FILE")
        child.expect("you>")
        child.send(f"/export {tmp_path / 'talk.md'}\r")
        child.expect("wrote")
        child.expect("you>")
        child.sendeof()
        child.expect(r"saved as session (\d+)")
        session_id = int(child.match.group(1))
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0
    store = ChatStore(tmp_path)
    session = store.get(session_id)
    assert session.system == "You are terse." and session.params["max_tokens"] == 400
    assert [m.role for m in session.messages] == ["user", "assistant", "user", "assistant"]
    assert session.messages[2].content == "Tell me a long story."  # the stopped one is kept
    assert session.messages[1].tokens == 12 and session.messages[1].ttft is not None
    assert "## You\n\nName three colours." in (tmp_path / "talk.md").read_text()
    # history is kept across runs: a new run recalls the last input
    child = spawn(["chat", "-u", "talker", "-e", url, "--no-save"], tmp_path)
    try:
        child.expect("you>")
        child.send("\x1b[A")
        child.expect("/export")  # the last input of the last run
        child.sendintr()  # Ctrl-C at the prompt: a fresh line, not the end
        child.send("/help\r")
        child.expect("/export FILE")
        child.send("/exit\r")
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert len(store.sessions()) == 1  # --no-save kept nothing

    # resumed: the request carries the earlier messages (the server counts their tokens in the prompt)
    def prompt_tokens(*args: str) -> int:
        done = subprocess.run([*xitui_cmd(), "chat", *args, "--json", "--max-tokens", "2", "-e", url, "Go on."],
                              capture_output=True, text=True, env=run_env(XITUI_HOME=str(tmp_path)), timeout=60)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)["usage"]["prompt_tokens"]

    fresh = prompt_tokens("-u", "talker", "--no-save")
    resumed = prompt_tokens("--continue")
    assert resumed > fresh + 20, (fresh, resumed)
    assert store.get(session_id).count == 6  # the resumed turn went to the same session
    listed = subprocess.run([*xitui_cmd(), "chats", "list", "--json"], capture_output=True, text=True,
                            env=run_env(XITUI_HOME=str(tmp_path)), timeout=60)
    assert [s["id"] for s in json.loads(listed.stdout)] == [session_id]
    found = subprocess.run([*xitui_cmd(), "chats", "search", "colours", "--json"], capture_output=True, text=True,
                           env=run_env(XITUI_HOME=str(tmp_path)), timeout=60)
    assert json.loads(found.stdout)[0]["session_id"] == session_id
    missing = subprocess.run([*xitui_cmd(), "chats", "show", "999"], capture_output=True, text=True,
                             env=run_env(XITUI_HOME=str(tmp_path)), timeout=60)
    assert missing.returncode == 1 and missing.stderr.startswith("error: no saved chat session 999")
    assert "Traceback" not in missing.stderr


def test_a_chat_on_a_terminal_yields_the_cpu_to_the_models(chat_server: ServerProcess, tmp_path: Path) -> None:
    """Drawing on a terminal, `xitui chat` runs 10 nice steps below the models (the config's niceness), all
    its threads; the server and its workers keep theirs; `niceness = 0` leaves the chat as it was."""
    import os

    import psutil

    base = os.getpriority(os.PRIO_PROCESS, 0)
    worker = Client(chat_server.url).describe_model("talker")["replicas"][0]["pid"]
    for config, expected in (("", min(19, base + 10)), ("niceness = 0\n", base)):
        (tmp_path / "config.toml").write_text(config)
        cmd = xitui_cmd()
        child = pexpect.spawn(cmd[0], [*cmd[1:], "chat", "-u", "talker", "-e", chat_server.url],
                              env=run_env(TERM="xterm", XITUI_HOME=str(tmp_path),
                                          XITUI_CONFIG=str(tmp_path / "config.toml")),
                              encoding="utf-8", timeout=60, dimensions=(40, 100))
        try:
            child.expect("you>")
            chat = psutil.Process(child.pid)
            assert {os.getpriority(os.PRIO_PROCESS, t.id) for t in chat.threads()} == {expected}
            assert psutil.Process(worker).nice() == psutil.Process(chat_server.proc.pid).nice() == base
            child.sendeof()
            child.expect(pexpect.EOF)
        finally:
            child.close()


def test_markdown_rendered_on_a_terminal_and_the_exact_text_in_a_pipe(chat_server: ServerProcess,
                                                                      tmp_path: Path) -> None:
    url = chat_server.url
    args = ["generate", "-u", "talker", "-e", url, "--temperature", "0", "--max-tokens", "24"]
    piped = subprocess.run([*xitui_cmd(), *args], input="\n".join(GROCERIES) + "\n", capture_output=True,
                           text=True, env=run_env(XITUI_HOME=str(tmp_path)), timeout=60)
    assert piped.returncode == 0, piped.stderr
    text = piped.stdout
    assert text.startswith("- ") and "\x1b" not in text  # the model continues the list, nothing else added

    def terminal(*extra: str) -> str:
        child = spawn([*args, *extra], tmp_path)
        try:
            child.expect("prompt>")
            child.send('"""\r')
            for line in GROCERIES:
                child.expect(r"\.\.\.")
                child.send(line + "\r")
            child.expect(r"\.\.\.")
            child.send('"""\r')
            child.expect("prompt>")  # the next prompt: the answer is all before it
            shown = child.before
            child.sendeof()
            child.expect(pexpect.EOF)
        finally:
            child.close()
        return shown

    rendered = ANSI.sub("", terminal())
    first_item = text.splitlines()[0][2:]
    assert f"• {first_item}" in rendered  # the list is drawn as a list, not as "- " source
    raw = terminal("--raw").replace("\r\n", "\n")
    assert text in raw  # --raw on a terminal prints the same bytes as the pipe


def test_a_chat_killed_mid_answer_keeps_the_question_and_resumes(chat_server: ServerProcess, tmp_path: Path) -> None:
    import os
    import signal
    import sqlite3

    url = chat_server.url
    child = spawn(["chat", "-u", "talker", "-e", url, "--max-tokens", "400"], tmp_path)
    try:
        child.expect("you>")
        before = Client(url).describe_model("talker")["metrics"]["requests"]
        child.send("Tell me a long story.\r")
        wait_streaming(url, request=before + 1)
        os.kill(child.pid, signal.SIGKILL)
        child.expect(pexpect.EOF)
    finally:
        child.close()
    conn = sqlite3.connect(tmp_path / "chats.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    store = ChatStore(tmp_path)
    session = store.sessions()[0]
    assert [m.role for m in store.get(session.id).messages] == ["user"]  # only the answer was lost
    deadline = time.monotonic() + 5
    while in_flight(url):  # the server noticed the client was gone and stopped generating
        assert time.monotonic() < deadline
        time.sleep(0.05)
    done = subprocess.run([*xitui_cmd(), "chat", "--continue", "--json", "--max-tokens", "2", "-e", url, "Go on."],
                          capture_output=True, text=True, env=run_env(XITUI_HOME=str(tmp_path)), timeout=60)
    assert done.returncode == 0, done.stderr
    assert [m.role for m in store.get(session.id).messages] == ["user", "user", "assistant"]
