"""Coding agents on a local model (`xitui agent claude|codex`, the shape of `ollama launch`): which model they
talk to, whether its context holds what they send, and the environment or flags that point them here.

Claude Code speaks Anthropic's Messages API (`/v1/messages`) and reads its server and model from environment
variables; Codex speaks OpenAI's Responses API (`/v1/responses`) and reads a provider from its config, which
`-c key=value` flags set for one run without touching the user's own `~/.codex`.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xitui.client import Client
from xitui.core.errors import XituiError


@dataclass(frozen=True)
class Agent:
    """A coding agent: its program, the npm package it comes in, what its first request takes."""

    command: str
    package: str
    #: Tokens of the agent's first request (its system prompt and tools), measured: the context a model needs.
    first_request: int


AGENTS = {
    # Claude Code 2.1: a 6 KB system prompt and 25 tools, ~85 KB: about 21k tokens on Gemma 3's tokenizer
    "claude": Agent("claude", "@anthropic-ai/claude-code", 21_000),
    # Codex 0.171: 9 tools and its instructions, ~40 KB: about 10k tokens
    "codex": Agent("codex", "@openai/codex", 10_000),
}


def agent_named(name: str) -> Agent:
    agent = AGENTS.get(name)
    if agent is None:
        raise XituiError(f"no agent {name!r}: {' or '.join(AGENTS)}")
    return agent


def executable(agent: Agent) -> str:
    """The agent's program on PATH, or the one line that says how to install it."""
    found = shutil.which(agent.command)
    if found is None:
        raise XituiError(f"{agent.command} is not installed: npm install -g {agent.package}")
    return found


def chat_model(client: Client, uid: str | None, name: str | None, said: Callable[[str], None]) -> dict[str, Any]:
    """The running chat model the agent talks to (its describe record): the uid given; else the model named,
    launched if none runs; else the one chat model running."""
    models: dict[str, dict[str, Any]] = {u: dict(d) for u, d in client.list_models().items()}
    found: dict[str, Any]
    if uid is not None:
        if uid not in models:
            raise XituiError(f"no running model {uid!r}" + (f" (running: {', '.join(models)})" if models else ""))
        found = {"model_uid": uid, **models[uid]}
    elif name is not None:
        running = [u for u, d in models.items() if d.get("model_name") == name]
        if running:
            uid = running[0]
        else:
            said(f"launching {name}")
            uid = client.launch_model(model_name=name, model_type="LLM")
        found = {"model_uid": uid, **dict(client.list_models()[uid])}
    else:
        chats = [u for u, d in models.items()
                 if d.get("model_type") == "LLM" and "chat" in (d.get("model_ability") or [])]
        if len(chats) != 1:
            raise XituiError("no chat model is running: name one with -m NAME (it is launched) or -u UID" if not chats
                             else f"{len(chats)} chat models are running ({', '.join(chats)}): pick one with -u UID")
        found = {"model_uid": chats[0], **models[chats[0]]}
    if found.get("model_type", "LLM") != "LLM" or "chat" not in (found.get("model_ability") or ["chat"]):
        raise XituiError(f"{found['model_uid']} is not a chat model")
    return found


def context_warning(agent: Agent, model: dict[str, Any]) -> str | None:
    """A line when the model's context is smaller than the agent's first request."""
    context = model.get("context_length")
    if isinstance(context, int) and context < agent.first_request * 5 // 4:
        return (f"{model['model_uid']} holds {context} tokens; {agent.command}'s first request alone is about "
                f"{agent.first_request} (launch a model with a longer context_length)")
    return None


def environment(agent: Agent, base_url: str, api_key: str | None, uid: str) -> dict[str, str]:
    """The variables that point the agent at this server and model."""
    if agent.command == "claude":
        return {
            "ANTHROPIC_BASE_URL": base_url,
            # (Claude Code asks for a login without a token; the server checks it only where it has a key)
            "ANTHROPIC_AUTH_TOKEN": api_key or "xitui",
            "ANTHROPIC_MODEL": uid,
            "ANTHROPIC_DEFAULT_OPUS_MODEL": uid,
            "ANTHROPIC_DEFAULT_SONNET_MODEL": uid,
            "ANTHROPIC_DEFAULT_HAIKU_MODEL": uid,
            "ANTHROPIC_SMALL_FAST_MODEL": uid,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        }
    return {"XITUI_API_KEY": api_key or "xitui"}


def cleaned(agent: Agent, environ: dict[str, str]) -> dict[str, str]:
    """The user's environment less what would send the agent elsewhere or hand it another service's key (a
    real ANTHROPIC_API_KEY would go to this server as x-api-key)."""
    dropped = {"claude": ("ANTHROPIC_API_KEY", "ANTHROPIC_CUSTOM_HEADERS", "CLAUDE_CODE_USE_BEDROCK",
                          "CLAUDE_CODE_USE_VERTEX", "CLAUDE_CODE_USE_FOUNDRY"),
               "codex": ("OPENAI_API_KEY", "OPENAI_BASE_URL", "CODEX_API_KEY")}[agent.command]
    return {key: value for key, value in environ.items() if key not in dropped}


def arguments(agent: Agent, base_url: str, uid: str) -> list[str]:
    """Flags before the user's own arguments (Codex's provider, for this run only)."""
    if agent.command != "codex":
        return []
    settings = {"model": uid, "model_provider": "xitui", "model_providers.xitui.name": "xitui",
                "model_providers.xitui.base_url": f"{base_url}/v1", "model_providers.xitui.wire_api": "responses",
                "model_providers.xitui.env_key": "XITUI_API_KEY"}
    out: list[str] = []
    for key, value in settings.items():
        out += ["-c", f"{key}={json.dumps(value)}"]
    return out
