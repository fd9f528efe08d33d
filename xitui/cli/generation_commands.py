"""`generate`, `chat`, `embed`: talk to a running model (stdin piped or an interactive loop)."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from xitui.cli import completion
from xitui.cli.common import (
    ApiKey,
    Endpoint,
    HideReasoning,
    Json,
    MaxTokens,
    ModelUid,
    NoSave,
    Raw,
    Schema,
    Stop,
    Temperature,
    ToolChoice,
    Tools,
    TopP,
    chat_store,
    connect,
    generation_config,
    read_tools,
    response_format,
    settings,
    tool_choice,
)
from xitui.core.safe_text import safe
from xitui.terminal import output

NoStream = Annotated[bool, typer.Option("--no-stream", help="Print the answer at the end instead of as it comes.")]


def _write(text: str) -> None:
    """Text on stdout, made safe (answers, documents, what a model wrote: core/safe_text.py)."""
    sys.stdout.write(safe(text))
    sys.stdout.flush()


def _read_stdin() -> str:
    from xitui.core.errors import XituiError

    text = sys.stdin.read()
    if not text.strip():
        raise XituiError("no prompt: stdin was empty")
    return text


def _conversation(handle: Any, uid: str, kind: str, config: dict[str, Any], store: Any,
                  system: str | None = None, session: Any = None) -> Any:
    from xitui.client.conversation import Conversation

    name = (getattr(handle, "description", None) or {}).get("model_name") or uid
    return Conversation(handle, model_uid=uid, model_name=name, kind=kind, params=config, store=store,
                        system=system, session=session)


def _chat_loop(conversation: Any, raw: bool, show_reasoning: bool = True) -> Any:
    """The terminal face of a conversation; drawing on a terminal, it yields the CPU to the models (the
    server, started by now if this command started it, keeps its priority)."""
    from xitui.cli.chat_loop import ChatLoop
    from xitui.terminal.pacing import yield_to_models

    loop = ChatLoop(conversation, raw, show_reasoning)
    if loop.rendered:
        yield_to_models(settings().niceness)
    return loop


def _loop(conversation: Any, raw: bool, intro: str, show_reasoning: bool = True) -> None:
    from xitui.cli.chat_loop import history_path
    from xitui.core.config import home_dir

    output.info(intro)
    kind = conversation.kind
    looping = _chat_loop(conversation, raw, show_reasoning)
    looping.loop(history_path(home_dir(), kind))
    conversation = looping.conversation  # /clear starts a new one
    if conversation.store is not None and conversation.session_id is not None:
        output.info(f"saved as session {conversation.session_id} (`xitui chat --session "
                    f"{conversation.session_id}` resumes it)" if kind == "chat" else
                    f"saved as session {conversation.session_id} (`xitui chats show {conversation.session_id}`)")


def generate(
    model_uid: ModelUid,
    prompt: Annotated[str | None, typer.Argument(help="The prompt (default: stdin when piped, else a loop).")] = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    top_p: TopP = None,
    stop: Stop = None,
    schema: Schema = None,
    no_stream: NoStream = False,
    raw: Raw = False,
    no_save: NoSave = False,
    as_json: Json = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Complete text. With stdin piped, all of stdin is one prompt and only the generated text is printed;
    on a terminal, a loop whose prompts and completions are saved (`xitui chats`)."""
    handle = connect(endpoint, api_key).get_model(model_uid)
    if not hasattr(handle, "generate"):
        from xitui.core.errors import XituiError

        kind = handle.description.get("model_type", "embedding")
        what, use = ("a rerank", "rerank") if kind == "rerank" else ("an embedding", "embed")
        raise XituiError(f"model {model_uid!r} is {what} model: use `xitui {use}`")
    config = generation_config(max_tokens, temperature, top_p, stop)
    form = response_format(schema)
    if form is not None:
        config["response_format"] = form
        raw = True  # JSON, printed as it comes: no Markdown rendering

    def run(text: str) -> None:
        if as_json:
            output.print_json(handle.generate(text, {**config, "stream": False}))
        elif no_stream:
            _write(handle.generate(text, {**config, "stream": False})["choices"][0]["text"])
        else:
            _chat_loop(_conversation(handle, model_uid, "generate", config, None), raw).ask(text)
            return
        if sys.stdout.isatty() and not as_json:
            _write("\n")

    if prompt is not None:
        run(prompt)
    elif not sys.stdin.isatty():
        run(_read_stdin())
    else:
        conversation = _conversation(handle, model_uid, "generate", config, chat_store(no_save))
        _loop(conversation, raw, f"generating with {model_uid}; /help for commands, Ctrl-D ends")


def chat(
    model_uid: Annotated[str | None, typer.Option(
        "--model-uid", "-u", help="The running model's uid (default with --continue/--session: the session's).",
        autocompletion=completion.model_uids)
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="System prompt for the conversation.")] = None,
    message: Annotated[str | None, typer.Argument(help="One message (default: stdin when piped, else a loop).")] = None,
    resume_last: Annotated[bool, typer.Option("--continue", "-C", help="Resume the last saved conversation.")] = False,
    session_id: Annotated[int | None, typer.Option("--session", help="Resume saved conversation ID.")] = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    top_p: TopP = None,
    stop: Stop = None,
    schema: Schema = None,
    tools: Tools = None,
    choice: ToolChoice = None,
    hide_reasoning: HideReasoning = False,
    images: Annotated[list[str] | None, typer.Option(
        "--image", help="An image file for the first message (again for more): a vision model reads it.",
        show_default=False)] = None,
    no_stream: NoStream = False,
    raw: Raw = False,
    no_save: NoSave = False,
    as_json: Json = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Chat with a model; the conversation is saved (`xitui chats`) and can be resumed (--continue)."""
    from xitui.core.errors import XituiError

    session = None
    if resume_last or session_id is not None:
        from xitui.core.config import home_dir
        from xitui.core.saved_chats import ChatStore

        saved = ChatStore(home_dir())
        session = saved.get(session_id) if session_id is not None else saved.last(kind="chat")
        if session is None:
            raise XituiError("no saved conversation to continue (see `xitui chats list`)")
        if session.kind != "chat":
            raise XituiError(f"session {session.id} is a generate session: `xitui chats show {session.id}`")
    uid = model_uid or (session.model_uid if session else None)
    if uid is None:
        raise XituiError("which model? give --model-uid (see `xitui list`), or --continue a saved conversation")
    handle = connect(endpoint, api_key).get_model(uid)
    if not hasattr(handle, "chat"):
        raise XituiError(f"model {uid!r} cannot chat (see `xitui list`); try `xitui generate`")
    config = generation_config(max_tokens, temperature, top_p, stop)
    if session is not None:
        config = {**session.params, **{k: v for k, v in config.items() if k in _given(max_tokens, temperature,
                                                                                          top_p, stop)}}
    form = response_format(schema)
    if form is not None:
        config["response_format"] = form
        raw = True  # JSON, printed as it comes: no Markdown rendering
    offered = read_tools(tools)
    if offered:
        config["tools"] = offered
        if choice is not None:
            config["tool_choice"] = tool_choice(choice)
    elif choice is not None:
        raise XituiError("--tool-choice: give the tools to choose from with --tools")
    store = chat_store(no_save)
    conversation = _conversation(handle, uid, "chat", config, store, system, session)
    for path in images or ():
        conversation.attach(path)
    if session is not None and store is not None and uid != session.model_uid:
        store.update(session.id, model_uid=uid)

    def one(text: str) -> None:
        if as_json or no_stream:
            result = conversation.complete(text)
            if as_json:
                output.print_json(result)
            else:
                from xitui.cli.chat_loop import show_calls

                message = result["choices"][0]["message"]
                if message.get("reasoning_content") and not hide_reasoning:
                    sys.stderr.write(safe(message["reasoning_content"]) + "\n")
                if message.get("content"):
                    _write(message["content"] + "\n")
                show_calls(message.get("tool_calls") or [])
        else:
            _chat_loop(conversation, raw, not hide_reasoning).ask(text)

    if message is not None:
        one(message)
        return
    if not sys.stdin.isatty():
        one(_read_stdin())
        return
    if session is not None:
        output.info(f"resuming session {session.id} with {uid} ({len(session.messages)} messages)")
        for earlier in session.messages[-2:]:
            who = "you" if earlier.role == "user" else uid
            output.info(f"  {who}: {' '.join(earlier.content.split())[:200]}")
    _loop(conversation, raw, f"chatting with {uid}; /help for commands, Ctrl-C stops an answer, Ctrl-D ends",
          not hide_reasoning)


def _given(max_tokens: Any, temperature: Any, top_p: Any, stop: Any) -> set[str]:
    """The parameters given on the command line (they win over a resumed session's)."""
    named = {"max_tokens": max_tokens, "temperature": temperature, "top_p": top_p, "stop": stop}
    return {k for k, v in named.items() if v is not None}


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

    texts = _given_or_piped(texts, "texts as arguments", "text")
    handle = connect(endpoint, api_key).get_model(model_uid)
    if not hasattr(handle, "create_embedding"):
        raise XituiError(f"model {model_uid!r} is not an embedding model (see `xitui list`)")
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


def rerank(
    model_uid: ModelUid,
    query: Annotated[str, typer.Argument(help="What the documents should answer.", show_default=False)],
    documents: Annotated[list[str] | None, typer.Argument(help="Documents to order (default: stdin lines).")] = None,
    top_n: Annotated[int | None, typer.Option("--top-n", "-k", min=1, help="Show only the best N.")] = None,
    as_json: Json = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Order documents by their relevance to a query; prints score, index and document, best first."""
    from xitui.core.errors import XituiError

    documents = _given_or_piped(documents, "documents as arguments after the query", "document")
    handle = connect(endpoint, api_key).get_model(model_uid)
    if not hasattr(handle, "rerank"):
        raise XituiError(f"model {model_uid!r} is not a rerank model")
    result = handle.rerank(documents, query, top_n=top_n, return_documents=as_json)
    if as_json:
        output.print_json(result)
        return
    for item in result["results"]:
        _write(f"{item['relevance_score']:+.4f}  {item['index']}  {documents[item['index']]}\n")


def _given_or_piped(given: list[str] | None, how: str, what: str) -> list[str]:
    """The arguments, else stdin's non-blank lines (a terminal on stdin, or nothing piped, is an error)."""
    from xitui.core.errors import XituiError

    if given:
        return given
    if sys.stdin.isatty():
        raise XituiError(f"give {how}, or pipe them on stdin, one per line")
    lines = [line for line in sys.stdin.read().splitlines() if line.strip()]
    if not lines:
        raise XituiError(f"no {what}: stdin was empty")
    return lines
