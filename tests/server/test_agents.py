"""Claude Code and Codex on real weights (the bundled SmolLM2), started by `xitui agent` as a user starts them:
each sends its own whole request (its system prompt, its tools, its fields) and completes its run, exit 0.
Answer quality from a 135M model is not the test; the tool round trips are test_scripted_agents.py's.

SmolLM2 holds 8192 tokens: Claude Code runs with its Bash tool alone (its 24 tools and prompt are ~21k tokens),
Codex with the model launched at 16384 (its prompt is ~9k tokens)."""

from __future__ import annotations

from tests.server.conftest import ServerProcess
from tests.support import agents
from xitui.client import Client

MODEL = "demo-smollm2-135m"


def test_claude_code_completes_a_run_on_smollm2(server: ServerProcess, tmp_path):
    agents.need("claude")
    ran = agents.run(server.url, "claude", ["-m", MODEL], ["-p", "Say hello.", "--tools", "Bash"], tmp_path)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip() and "API Error" not in ran.stdout
    assert "about 21000" in ran.stderr  # the warning: this model's context is smaller than the whole prompt
    Client(server.url).terminate_model(MODEL)


def test_codex_completes_a_run_on_smollm2(server: ServerProcess, tmp_path):
    agents.need("codex")
    client = Client(server.url)
    uid = client.launch_model(model_name=MODEL, model_uid="codex-smollm2", context_length=16384)
    try:
        ran = agents.run(server.url, "codex", ["-u", uid], ["exec", "--skip-git-repo-check", "Reply with one word: hello."], tmp_path)
    finally:
        client.terminate_model(uid)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert ran.stdout.strip() and "ERROR" not in ran.stderr
