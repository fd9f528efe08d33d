"""Claude Code and Codex on real weights (the bundled SmolLM2), started by `xitui agent` as a user starts them:
each sends its own request (its system prompt, tools and fields) and completes its run, exit 0.
Answer quality from a 135M model is not the test; the tool round trips are test_scripted_agents.py's.

SmolLM2 holds 8192 tokens: Claude Code runs without its tools (its 24 tools and prompt are ~21k tokens; with
Bash alone, SmolLM2's auto calls, valid now, were refused permission over and over until the context was
full), Codex with its shell's tools and short instructions of its own (~1.5k tokens)."""

from __future__ import annotations

import json

from tests.server.conftest import ServerProcess
from tests.support import agents
from xitui.client import Client

MODEL = "demo-smollm2-135m"
#: Codex's switches that leave it the shell's tools alone (exec_command, write_stdin, request_user_input).
SHELL_ONLY = ("-c", "web_search=disabled", "--disable", "goals", "--disable", "multi_agent", "--disable",
              "view_image")


def test_claude_code_completes_a_run_on_smollm2(server: ServerProcess, tmp_path):
    """Claude Code sends no temperature: sampled, SmolLM2 sometimes wrote on until its context was full (and
    Claude Code's follow-up overflowed it). A copy of its spec that ends an answer at its first blank line
    (a spec's `stop` applies to every request) keeps the run short, as a user would tune a small model."""
    agents.need("claude")
    client = Client(server.url)
    spec = dict(client.get_model_registration("LLM", MODEL))
    spec.update(model_name="smol-agent", stop=[*(spec.get("stop") or []), "\n\n"])
    for key in ("is_builtin", "persisted", "cache_status"):
        spec.pop(key, None)
    client.register_model("LLM", json.dumps(spec), persist=False)
    try:
        ran = agents.run(server.url, "claude", ["-m", "smol-agent"], ["-p", "Say hello.", "--tools", ""], tmp_path)
    finally:
        client.terminate_model("smol-agent")
        client.unregister_model("LLM", "smol-agent")
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
    client = Client(server.url)
    uid = client.launch_model(model_name=MODEL, model_uid="codex-smollm2")
    instructions = tmp_path / "instructions.md"
    instructions.write_text("You are a coding agent. Answer briefly.\n")
    try:
        args = ["-c", f"model_instructions_file={instructions}", *SHELL_ONLY, "exec", "--skip-git-repo-check",
                "Reply with one word: hello."]
        ran = agents.run(server.url, "codex", ["-u", uid], args, tmp_path)
    finally:
        client.terminate_model(uid)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip() and "ERROR" not in ran.stderr
