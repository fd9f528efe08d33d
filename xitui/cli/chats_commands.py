"""`chats list|show|export|delete|search`: the saved conversations (xitui/core/saved_chats.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from xitui.cli.common import Json
from xitui.terminal import output

chats_app = typer.Typer(help="Saved conversations: list, show, export, delete, search.", no_args_is_help=True)

SessionId = Annotated[int, typer.Argument(help="The session's id (see `xitui chats list`).")]
ImagesTo = Annotated[Path | None, typer.Option(
    "--images", metavar="DIR", help="Write the images the questions sent into DIR (each once) and link them.")]


def _store():  # noqa: ANN202 - the store's type is core's, imported here only when a command runs
    from xitui.core.config import home_dir
    from xitui.core.saved_chats import ChatStore

    return ChatStore(home_dir())


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


@chats_app.command("list")
def list_chats(
    model_uid: Annotated[str | None, typer.Option("--model-uid", "-u", help="Only this model's.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most this many, newest first.")] = 50,
    as_json: Json = False,
) -> None:
    """Saved conversations, the most recent first."""
    sessions = _store().sessions(model_uid=model_uid, limit=limit)
    if as_json:
        output.print_json([{k: v for k, v in s.as_dict().items() if k != "messages"} for s in sessions])
        return
    rows = [[s.id, _when(s.updated), s.kind, s.model_uid, s.count, s.title] for s in sessions]
    output.table(["id", "updated", "kind", "model", "messages", "first message"], rows, title="saved conversations")


def _written(session, folder: Path | None) -> dict[str, Path] | None:  # noqa: ANN001 - core's ChatSession
    """The session's images written into `folder` (where each is, by its hash), or None without one."""
    if folder is None:
        return None
    from xitui.core.errors import XituiError
    from xitui.core.saved_chats import write_images

    try:
        written = write_images(session, folder)
    except OSError as exc:
        raise XituiError(f"cannot write the images into {folder}: {exc.strerror}") from None
    output.info(f"{len(written)} image{'s' * (len(written) != 1)} in {folder}")
    return written


@chats_app.command("show")
def show(session_id: SessionId, as_json: Json = False, images: ImagesTo = None) -> None:
    """A conversation in full (Markdown, rendered on a terminal); each image where it was sent."""
    from xitui.core.safe_text import safe, safe_json_text
    from xitui.core.saved_chats import to_json, to_markdown

    session = _store().get(session_id)  # kept as the model wrote it; shown made safe
    written = _written(session, images)
    if as_json:
        print(safe_json_text(to_json(session)), end="")
    elif output.plain():
        print(safe(to_markdown(session, written)), end="")
    else:
        from xitui.terminal.markdown import AnswerMarkdown

        output.console().print(AnswerMarkdown(safe(to_markdown(session, written))))


@chats_app.command("export")
def export(
    session_id: SessionId,
    fmt: Annotated[str, typer.Option("--format", "-f", help="markdown or json.")] = "markdown",
    to: Annotated[Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")] = None,
    images: ImagesTo = None,
) -> None:
    """A conversation as Markdown or JSON (exact in a file; on stdout, made safe for a terminal)."""
    from xitui.core.errors import XituiError
    from xitui.core.safe_text import safe, safe_json_text
    from xitui.core.saved_chats import to_json, to_markdown

    if fmt not in ("markdown", "md", "json"):
        raise XituiError(f"--format: {fmt!r} is not markdown or json")
    session = _store().get(session_id)
    written = _written(session, images)
    text = to_json(session) if fmt == "json" else to_markdown(session, written)
    if to is None:
        print(safe_json_text(text) if fmt == "json" else safe(text), end="")
        return
    try:
        to.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise XituiError(f"cannot write {to}: {exc.strerror}") from None
    output.info(f"wrote {to}")


@chats_app.command("delete")
def delete(session_id: SessionId) -> None:
    """Delete a conversation and its messages."""
    _store().delete(session_id)
    output.info(f"deleted session {session_id}")


@chats_app.command("search")
def search(
    text: Annotated[str, typer.Argument(help='Words (all must appear), "a phrase", or prefix*.')],
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    as_json: Json = False,
) -> None:
    """Messages that match, best first, with the session they belong to."""
    hits = _store().search(text, limit=limit)
    if as_json:
        output.print_json(hits)
        return
    rows = [[h["session_id"], _when(h["created"]), h["model_uid"], h["role"], " ".join(h["snippet"].split())]
            for h in hits]
    output.table(["session", "when", "model", "role", "match"], rows, title=f"{len(hits)} matches")
