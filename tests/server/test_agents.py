"""Claude Code and Codex on real weights (the bundled SmolLM2), started by `xitui agent` as a user starts them:
each sends its own request (its system prompt, tools and fields) and completes its run, exit 0.
Answer quality from a 135M model is not the test; the tool round trips are test_scripted_agents.py's.

SmolLM2 holds 8192 tokens: Claude Code runs without its tools (its 24 tools and prompt are ~21k tokens; with
Bash alone, SmolLM2's auto calls, valid now, were refused permission over and over until the context was
full), Codex with its shell's tools and short instructions of its own (~1.5k tokens)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from tests.server.conftest import ServerProcess
from tests.support import agents
from xitui.client import Client

MODEL = "demo-smollm2-135m"
#: Codex's switches that leave it the shell's tools alone (exec_command, write_stdin, request_user_input).
SHELL_ONLY = ("-c", "web_search=disabled", "--disable", "goals", "--disable", "multi_agent", "--disable",
              "view_image")


@contextlib.contextmanager
def brief(client: Client) -> Iterator[str]:
    """A copy of SmolLM2's spec that ends an answer at its first blank line (a spec's `stop` applies to every
    request), as a user would tune a small model: neither agent sends a temperature, and sampled, SmolLM2
    sometimes wrote on until its context was full (Codex's run once took 4 minutes)."""
    spec = dict(client.get_model_registration("LLM", MODEL))
    spec.update(model_name="smol-agent", stop=[*(spec.get("stop") or []), "\n\n"])
    for key in ("is_builtin", "persisted", "cache_status"):
        spec.pop(key, None)
    client.register_model("LLM", json.dumps(spec), persist=False)
    try:
        yield "smol-agent"
    finally:
        with contextlib.suppress(Exception):  # (the agent may not have loaded it)
            client.terminate_model("smol-agent")
        client.unregister_model("LLM", "smol-agent")


def test_claude_code_completes_a_run_on_smollm2(server: ServerProcess, tmp_path):
    """Without its tools, on the brief copy of SmolLM2 (sampled, it once wrote on until its context was full
    and Claude Code's follow-up overflowed it)."""
    agents.need("claude")
    with brief(Client(server.url)) as name:
        ran = agents.run(server.url, "claude", ["-m", name], ["-p", "Say hello.", "--tools", ""], tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip() and "API Error" not in ran.stdout
    assert "about 21000" in ran.stderr  # the warning: this model's context is smaller than the whole prompt


def test_codex_completes_a_run_on_smollm2(server: ServerProcess, tmp_path):
    """Codex's own instructions (~4.5k of its ~9.5k tokens) give way to two lines of a file, as its
    `model_instructions_file` lets a user of a small model do, and its tools to the shell's (web search, goals,
    sub-agents and images off: ~3.7k tokens of its schemas, namespaces included): its developer messages and
    fields are sent as they are. Read on 2 cores, the whole prompt took 77 s of the suite, this one ~10 s; the
    whole request, every tool, is test_scripted_agents.py's."""
    agents.need("codex")
    instructions = tmp_path / "instructions.md"
    instructions.write_text("You are a coding agent. Answer briefly.\n")
    with brief(Client(server.url)) as name:
        args = ["-c", f"model_instructions_file={instructions}", *SHELL_ONLY, "exec", "--skip-git-repo-check",
                "Reply with one word: hello."]
        ran = agents.run(server.url, "codex", ["-m", name], args, tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip() and "ERROR" not in ran.stderr
