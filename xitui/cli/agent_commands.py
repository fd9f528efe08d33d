"""`xitui agent claude|codex`: a coding agent run on a local model (xitui/client/agents.py)."""

from __future__ import annotations

import os
import shlex
import subprocess
from typing import Annotated

import typer

from xitui.cli import completion
from xitui.cli.common import ApiKey, Endpoint, connect
from xitui.terminal import output


def agent(
    name: Annotated[str, typer.Argument(help="claude (Claude Code) or codex (Codex CLI).", show_default=False)],
    args: Annotated[list[str] | None, typer.Argument(
        help="The agent's own arguments, after -- (xitui agent claude -- -p 'fix the tests').",
        show_default=False)] = None,
    model_uid: Annotated[str | None, typer.Option(
        "--model-uid", "-u", help="A running model's uid.", autocompletion=completion.model_uids)] = None,
    model_name: Annotated[str | None, typer.Option(
        "--model", "-m", help="A registered model's name: launched if it is not running.",
        autocompletion=completion.model_names)] = None,
    show: Annotated[bool, typer.Option(
        "--print", help="Print the environment and command instead of running the agent.")] = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Run Claude Code or Codex on a model served here: the model running (or launched with -m), the agent
    pointed at this server for this run only (your own agent settings are left as they are). Exits with the
    agent's exit code."""
    from xitui.client import agents

    which = agents.agent_named(name)
    client = connect(endpoint, api_key)
    model = agents.chat_model(client, model_uid, model_name, output.info)
    warning = agents.context_warning(which, model)
    if warning:
        output.warning(warning)
    base_url = client.transport.base_url.rstrip("/")
    env = agents.environment(which, base_url, client.api_key, model["model_uid"])
    command = [which.command, *agents.arguments(which, base_url, model["model_uid"]), *(args or [])]
    if show:
        for key, value in env.items():
            print(f"export {key}={shlex.quote(value)}")
        print(shlex.join(command))
        return
    command[0] = agents.executable(which)
    ran = subprocess.run(command, env={**agents.cleaned(which, dict(os.environ)), **env}, check=False)
    raise typer.Exit(ran.returncode)
