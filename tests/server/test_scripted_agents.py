"""Claude Code and Codex (the pinned npm packages, tests/support/agents.py) run by `xitui agent` against a real
server and a scripted model: each asks for a command through its own tool (Claude Code's Bash over the
Messages API, Codex's exec_command over the Responses API), runs it, sends the result back, and prints the
answer the model gives then, exiting 0. The same agents on real weights: test_agents.py (slow)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from tests.support import agents, servers
from tests.support.models import launched
from tests.support.specs import scripted_spec
from xitui.client import Client


def call(name: str, **arguments: Any) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


#: What the command writes and prints: the command's own text never holds it (printf puts it together).
MADE = "xitui-ok"
COMMAND = "printf 'xitui-%s' ok > made.txt && cat made.txt"


def agent_model(server: servers.ServerProcess, directory: Path, tool: str, **arguments: Any) -> Any:
    """A scripted model that calls `tool` when asked to write the file, and answers once it reads the output;
    its context as large as an agent's prompt (Claude Code's is ~85 KB)."""
    rules = [{"match": MADE, "reply": f"Done: made.txt holds {MADE}."},
             {"match": "Write the file", "reply": call(tool, **arguments)},
             {"reply": "Hello from a scripted model."}]
    spec = scripted_spec(f"agent-{tool.lower()}", directory, rules, abilities=["chat", "tools"],
                         context_length=262_144)
    return launched(Client(server.url), f"agent-{tool.lower()}", spec, model_engine="scripted")


def test_claude_code_runs_a_command_the_model_asks_for_and_prints_its_answer(scripted, tmp_path):
    agents.need("claude")
    with agent_model(scripted, tmp_path / "model", "Bash", command=COMMAND, description="Write made.txt") as uid:
        ran = agents.run(scripted.url, "claude", ["-u", uid], ["-p", "Write the file, please.",
                                                                 "--allowedTools", "Bash"], tmp_path, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (tmp_path / "made.txt").read_text() == MADE
    assert f"Done: made.txt holds {MADE}." in ran.stdout


def test_codex_runs_a_command_the_model_asks_for_and_prints_its_answer(scripted, tmp_path):
    agents.need("codex")
    with agent_model(scripted, tmp_path / "model", "exec_command", cmd=COMMAND) as uid:
        ran = agents.run(scripted.url, "codex", ["-u", uid], [
            "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox",
            "Write the file, please."], tmp_path, timeout=120)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert (tmp_path / "made.txt").read_text() == MADE
    assert f"Done: made.txt holds {MADE}." in ran.stdout


def test_print_shows_how_to_point_each_agent_here(scripted, tmp_path):
    with agent_model(scripted, tmp_path / "model", "Bash", command="true") as uid:
        claude = agents.run(scripted.url, "claude", ["-u", uid, "--print"], [], tmp_path, installed=False)
        codex = agents.run(scripted.url, "codex", ["-u", uid, "--print"], [], tmp_path, installed=False)
    assert claude.returncode == 0 and f"export ANTHROPIC_BASE_URL={scripted.url}" in claude.stdout
    assert f"export ANTHROPIC_MODEL={uid}" in claude.stdout and claude.stdout.rstrip().endswith("claude")
    assert codex.returncode == 0 and f"model_providers.xitui.base_url=\"{scripted.url}/v1\"" in codex.stdout
    assert "wire_api=\"responses\"" in codex.stdout


def test_what_cannot_be_started_is_one_line(scripted, tmp_path):
    unregistered = agents.run(scripted.url, "claude", ["-m", "nobody-registered"], [], tmp_path, installed=False)
    assert unregistered.returncode == 1 and "nobody-registered" in unregistered.stderr
    assert "Traceback" not in unregistered.stderr
    unknown = agents.run(scripted.url, "aider", [], [], tmp_path, installed=False)
    assert unknown.returncode == 1 and "no agent 'aider': claude or codex" in unknown.stderr
    missing = agents.run(scripted.url, "claude", ["-u", "nobody"], [], tmp_path, installed=False)
    assert missing.returncode == 1 and "no running model 'nobody'" in missing.stderr


def test_the_agent_gets_this_server_and_not_the_users_other_keys(scripted, tmp_path):
    """Found by attacking `xitui agent`: the user's real ANTHROPIC_API_KEY went along, and Claude Code would
    have sent it to this server as x-api-key."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "claude").write_text("#!/bin/sh\nenv\n")
    (fake / "claude").chmod(0o755)
    with agent_model(scripted, tmp_path / "model", "Bash", command="true") as uid:
        ran = agents.run(scripted.url, "claude", ["-u", uid], [], tmp_path, installed=False,
                         PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", ANTHROPIC_API_KEY="sk-ant-real",
                         CLAUDE_CODE_USE_BEDROCK="1")
    assert ran.returncode == 0, ran.stderr
    seen = dict(line.split("=", 1) for line in ran.stdout.splitlines() if "=" in line)
    assert seen["ANTHROPIC_BASE_URL"] == scripted.url and seen["ANTHROPIC_MODEL"] == uid
    assert "ANTHROPIC_API_KEY" not in seen and "CLAUDE_CODE_USE_BEDROCK" not in seen
