"""`generate`, `chat`, `embed`: talk to a running model (stdin piped or an interactive loop)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer

from xitui.cli import output
from xitui.cli.common import (
    ApiKey,
    Endpoint,
    Json,
    MaxTokens,
    ModelUid,
    Stop,
    Temperature,
    TopP,
    connect,
    generation_config,
)

NoStream = Annotated[bool, typer.Option("--no-stream", help="Print the answer at the end instead of as it comes.")]


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _stream_text(chunks: Iterator[dict[str, Any]], chat: bool) -> str:
    """Print pieces as they arrive; returns the whole text."""
    pieces = []
    for chunk in chunks:
        choices = chunk.get("choices") or [{}]
        text = (choices[0].get("delta") or {}).get("content") if chat else choices[0].get("text")
        if text:
            pieces.append(text)
            _write(text)
    return "".join(pieces)


def _read_stdin() -> str:
    from xitui.core.errors import XituiError

    text = sys.stdin.read()
    if not text.strip():
        raise XituiError("no prompt: stdin was empty")
    return text


def _ask(label: str) -> str | None:
    """One line from the user; None at end of input."""
    try:
        return input(label)
    except EOFError:
        return None


def generate(
    model_uid: ModelUid,
    prompt: Annotated[str | None, typer.Argument(help="The prompt (default: stdin when piped, else a loop).")] = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    top_p: TopP = None,
    stop: Stop = None,
    no_stream: NoStream = False,
    as_json: Json = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Complete text. With stdin piped, all of stdin is one prompt and only the generated text is printed."""
    handle = connect(endpoint, api_key).get_model(model_uid)
    if not hasattr(handle, "generate"):
        from xitui.core.errors import XituiError

        raise XituiError(f"model {model_uid!r} is an embedding model: use `xitui embed`")
    config = generation_config(max_tokens, temperature, top_p, stop)

    def run(text: str) -> None:
        if as_json:
            output.print_json(handle.generate(text, {**config, "stream": False}))
        elif no_stream:
            _write(handle.generate(text, {**config, "stream": False})["choices"][0]["text"])
        else:
            _stream_text(handle.generate(text, {**config, "stream": True}), chat=False)
        if sys.stdout.isatty() and not as_json:
            _write("\n")

    if prompt is not None:
        run(prompt)
    elif not sys.stdin.isatty():
        run(_read_stdin())
    else:
        output.info(f"generating with {model_uid}; an empty line or Ctrl-D ends")
        while (text := _ask("prompt> ")) not in (None, ""):
            try:
                run(text)
            except KeyboardInterrupt:
                _write("\n")


def chat(
    model_uid: ModelUid,
    system: Annotated[str | None, typer.Option("--system", help="System prompt for the conversation.")] = None,
    message: Annotated[str | None, typer.Argument(help="One message (default: stdin when piped, else a loop).")] = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    top_p: TopP = None,
    stop: Stop = None,
    no_stream: NoStream = False,
    as_json: Json = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Chat with a model, keeping the conversation's history (/reset clears it, /exit or Ctrl-D ends)."""
    from xitui.core.errors import XituiError

    handle = connect(endpoint, api_key).get_model(model_uid)
    if not hasattr(handle, "chat"):
        raise XituiError(f"model {model_uid!r} cannot chat (see `xitui list`); try `xitui generate`")
    config = generation_config(max_tokens, temperature, top_p, stop)
    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []

    def turn(text: str) -> None:
        messages = [*history, {"role": "user", "content": text}]
        if as_json:
            result = handle.chat(messages, generate_config={**config, "stream": False})
            output.print_json(result)
            answer = result["choices"][0]["message"]["content"]
        elif no_stream:
            answer = handle.chat(messages, generate_config={**config, "stream": False})["choices"][0]["message"]["content"]
            _write(answer)
        else:
            answer = _stream_text(handle.chat(messages, generate_config={**config, "stream": True}), chat=True)
        if not as_json:
            _write("\n")
        history.extend([{"role": "user", "content": text}, {"role": "assistant", "content": answer}])

    if message is not None:
        turn(message)
        return
    if not sys.stdin.isatty():
        turn(_read_stdin())
        return
    output.info(f"chatting with {model_uid}; /reset clears the history, /exit or Ctrl-D ends")
    while True:
        text = _ask("you> ")
        if text is None or text.strip() == "/exit":
            break
        if text.strip() == "/reset":
            del history[1 if system else 0:]
            output.info("(history cleared)")
            continue
        if not text.strip():
            continue
        try:
            turn(text)
        except KeyboardInterrupt:
            _write("\n")


def embed(
    model_uid: ModelUid,
    texts: Annotated[list[str] | None, typer.Argument(help="Texts to embed (default: stdin lines).")] = None,
    no_truncate: Annotated[
        bool, typer.Option("--no-truncate", help="Refuse inputs longer than the model reads instead of cutting them.")
    ] = False,
    as_json: Json = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Embed texts; prints one line per text (dimensions and the first values), or JSON with --json."""
    from xitui.core.errors import XituiError

    if not texts:
        if sys.stdin.isatty():
            raise XituiError("give texts as arguments or pipe them on stdin, one per line")
        texts = [line for line in sys.stdin.read().splitlines() if line.strip()]
        if not texts:
            raise XituiError("no text: stdin was empty")
    handle = connect(endpoint, api_key).get_model(model_uid)
    if not hasattr(handle, "create_embedding"):
        raise XituiError(f"model {model_uid!r} is an LLM, not an embedding model")
    result = handle.create_embedding(texts, truncate=not no_truncate)
    if as_json:
        output.print_json(result)
        return
    for item, text in zip(result["data"], texts, strict=False):
        vec = item["embedding"]
        head = ", ".join(f"{v:+.4f}" for v in vec[:4])
        _write(f"{len(vec)} dims [{head}, ...]  {text[:60]}\n")
    if result.get("truncated"):
        output.info("note: some inputs were longer than the model's max_tokens and were truncated")
