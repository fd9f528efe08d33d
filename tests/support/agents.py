"""The coding agents (Claude Code, Codex) scripts/install puts in .venv/agents, run against a test server by
`xitui agent` as a user runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT, xitui_cmd

BIN = ROOT / ".venv" / "agents" / "node_modules" / ".bin"


def need(command: str) -> None:
    """Skip, saying why, where the agent is not installed (scripts/install all,test installs it with npm)."""
    if not (BIN / command).exists() or shutil.which("node") is None:
        pytest.skip(f"{command} is not in {BIN}: scripts/install all,test installs it where npm is")


def run(url: str, agent: str, model: list[str], args: list[str], cwd: Path, timeout: float = 600, *,
        installed: bool = True, **env: str) -> subprocess.CompletedProcess[str]:
    """`xitui agent AGENT -e URL MODEL -- ARGS` in `cwd`, the agent's home there too (its settings, sessions
    and logs stay out of the user's); `installed`: the agent must be (else the test is skipped)."""
    if installed:
        need(agent)
    home = cwd / ".home"
    home.mkdir(exist_ok=True)
    environ = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HOME": str(home),
               "CODEX_HOME": str(home / ".codex"), **env}
    (home / ".codex").mkdir(exist_ok=True)
    return subprocess.run([*xitui_cmd(), "agent", agent, "-e", url, *model, "--", *args], cwd=cwd, env=environ,
                          capture_output=True, text=True, timeout=timeout)
