"""Options every server command takes, and the client they build."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xitui.cli import completion

if TYPE_CHECKING:
    from xitui.client import Client
    from xitui.core.config import Settings
    from xitui.core.saved_chats import ChatStore

Endpoint = Annotated[
    str | None,
    typer.Option("--endpoint", "-e", help="Server URL (default: config, XITUI_ENDPOINT, http://127.0.0.1:9997)."),
]
ApiKey = Annotated[str | None, typer.Option("--api-key", help="API key for a server that demands one.")]
Json = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ModelUid = Annotated[str, typer.Option("--model-uid", "-u", help="The running model's uid.",
                                       autocompletion=completion.model_uids)]
ModelType = Annotated[str, typer.Option("--model-type", "-t", help="LLM, embedding or rerank.")]


@cache
def settings() -> Settings:
    """The user's settings, read once per command."""
    from xitui.core.config import load_config

    return load_config()


def connect(endpoint: str | None, api_key: str | None) -> Client:
    """A client for the chosen endpoint; a local endpoint that does not answer gets a background server."""
    from xitui.client import Client

    config = settings()
    return Client(endpoint or config.endpoint, api_key or config.api_key, autostart=True)


def generation_config(
    max_tokens: int | None, temperature: float | None, top_p: float | None, stop: list[str] | None
) -> dict[str, Any]:
    """Generation parameters: the options given, else the config file's defaults."""
    defaults = settings().generation
    config: dict[str, Any] = {
        "max_tokens": max_tokens if max_tokens is not None else defaults.max_tokens,
        "temperature": temperature if temperature is not None else defaults.temperature,
        "top_p": top_p if top_p is not None else defaults.top_p,
    }
    if stop:
        config["stop"] = stop
    return {k: v for k, v in config.items() if v is not None}


def _json_option(option: str, source: str) -> Any:
    """An option that takes JSON: the JSON itself, or a file holding it; one line for what is wrong."""
    import json
    from pathlib import Path

    from xitui.core.errors import XituiError

    text = source
    if not source.lstrip().startswith(("[", "{")):
        try:
            text = Path(source).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise XituiError(f"{option}: cannot read {source} ({exc.strerror}); give a file or the JSON itself"
                             ) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise XituiError(f"{option}: not JSON ({exc})") from None


def response_format(schema: str | None) -> dict[str, Any] | None:
    """`--schema FILE|JSON` as a request's response_format (checked here: a bad schema is one line before
    anything is sent)."""
    if schema is None:
        return None
    from xitui.core.chat_format.json_schema import check_schema

    data = _json_option("--schema", schema)
    check_schema(data, "--schema")
    return {"type": "json_schema", "json_schema": {"name": str(data.get("title") or "schema")[:64], "schema": data,
                                                    "strict": True}}


def read_tools(source: str | None) -> list[dict[str, Any]] | None:
    """`--tools FILE|JSON`: OpenAI's tools list (or one tool, or bare functions), checked to be that shape."""
    if source is None:
        return None
    from xitui.core.errors import XituiError

    data = _json_option("--tools", source)
    items = data if isinstance(data, list) else [data]
    tools = []
    for i, item in enumerate(items):
        function = item.get("function", item) if isinstance(item, dict) else None
        if not isinstance(function, dict) or not isinstance(function.get("name"), str):
            raise XituiError(f"--tools[{i}]: a tool is {{\"type\": \"function\", \"function\": {{\"name\", "
                             "\"description\", \"parameters\"}}")
        tools.append({"type": "function", "function": function})
    return tools


Tools = Annotated[str | None, typer.Option(
    "--tools", help="Functions the model may call (OpenAI's tools JSON: a file or the JSON itself); its calls print "
                    "as name(arguments).")]
ToolChoice = Annotated[str | None, typer.Option(
    "--tool-choice", help="With --tools: auto (the model decides), required (some call), none, or a function's name.")]


def tool_choice(value: str | None) -> Any:
    """`--tool-choice` as the request takes it."""
    if value is None or value in ("auto", "required", "none"):
        return value
    return {"type": "function", "function": {"name": value}}


HideReasoning = Annotated[bool, typer.Option(
    "--hide-reasoning", help="Leave out a thinking model's reasoning (shown dim on stderr otherwise).")]
Schema = Annotated[str | None, typer.Option(
    "--schema", help="A JSON schema (a file, or the JSON itself) the answer must follow; it prints as JSON.")]
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", help="Most tokens to generate.")]
Temperature = Annotated[float | None, typer.Option("--temperature", help="Sampling temperature (0: greedy).")]
TopP = Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling probability mass.")]
Stop = Annotated[list[str] | None, typer.Option("--stop", help="Stop word (repeatable).")]


def chat_store(no_save: bool = False, force: bool = False) -> ChatStore | None:
    """The saved-conversations store, or None when saving is off (`--no-save`, `chats.save = false`)."""
    if no_save and not force:
        return None
    if not force and not settings().chats.save:
        return None
    from xitui.core.config import home_dir
    from xitui.core.saved_chats import ChatStore

    return ChatStore(home_dir())


NoSave = Annotated[bool, typer.Option("--no-save", help="Keep no record of this conversation.")]
Raw = Annotated[bool, typer.Option("--raw", help="Print the answer as plain text, not rendered Markdown.")]
