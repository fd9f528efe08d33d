"""Saved conversations: one SQLite file in XITUI_HOME (`chats.sqlite3`), shared by `xitui chat`, the
interactive `xitui generate` loop and the dashboard's chat pane.

The standard library's sqlite3 in WAL mode: every change is one transaction, so a process killed mid-answer
loses at most the message it was writing, never the file; several processes may write at once (each waits
for the others' locks up to `BUSY_TIMEOUT`). A connection is opened per operation, so any thread may use
the store. Messages are indexed for full-text search (FTS5).

A question's images are kept too, each stored once by its SHA-256 however many messages send it, and named
in each message where it was sent: a resumed conversation sends them again, `chats show` says where they were.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from xitui.core.errors import NotFoundError, XituiError
from xitui.core.files import private_file

FILE_NAME = "chats.sqlite3"
BUSY_TIMEOUT = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    created REAL NOT NULL,
    updated REAL NOT NULL,
    kind TEXT NOT NULL,              -- chat or generate
    model_uid TEXT NOT NULL,
    model_name TEXT,
    system TEXT,
    params TEXT NOT NULL DEFAULT '{}' -- generation parameters, JSON
);
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    session_id INTEGER NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    created REAL NOT NULL,
    role TEXT NOT NULL,              -- user or assistant (a prompt and its completion for generate)
    content TEXT NOT NULL,
    ttft REAL,
    tokens_per_s REAL,
    tokens INTEGER
);
CREATE INDEX IF NOT EXISTS messages_by_session ON messages(session_id, id);
CREATE TABLE IF NOT EXISTS images (
    sha256 TEXT PRIMARY KEY,         -- of its bytes: an image sent in many messages is kept once
    kind TEXT NOT NULL,              -- its media type (image/png...)
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS message_images (
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,       -- its place among the message's images
    sha256 TEXT NOT NULL REFERENCES images(sha256),
    name TEXT NOT NULL,              -- the file it was attached from
    PRIMARY KEY (message_id, position)
);
CREATE VIRTUAL TABLE IF NOT EXISTS messages_fts USING fts5(content, content='messages', content_rowid='id');
CREATE TRIGGER IF NOT EXISTS messages_ai AFTER INSERT ON messages BEGIN
    INSERT INTO messages_fts(rowid, content) VALUES (new.id, new.content);
END;
CREATE TRIGGER IF NOT EXISTS messages_ad AFTER DELETE ON messages BEGIN
    INSERT INTO messages_fts(messages_fts, rowid, content) VALUES ('delete', old.id, old.content);
END;
"""


class ChatStoreError(XituiError):
    """The chat store could not be read or written (a locked or broken file)."""

    pass


def _prepare(conn: sqlite3.Connection) -> None:
    """WAL mode and the tables, once per store object. Switching to WAL takes the database for itself and
    SQLite answers "locked" at once rather than waiting (busy_timeout does not cover it), so processes that
    open a new store together retry here until BUSY_TIMEOUT."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


@dataclass
class SavedImage:
    """An image a question sent: the file's name, its media type and its bytes."""

    name: str
    kind: str
    data: bytes = field(repr=False)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def data_url(self) -> str:
        return f"data:{self.kind};base64,{base64.b64encode(self.data).decode()}"

    def as_dict(self) -> dict[str, Any]:
        """What a listing says of it (its bytes are not text)."""
        return {"name": self.name, "kind": self.kind, "sha256": self.sha256, "bytes": len(self.data)}


@dataclass
class ChatMessage:
    """One message of a saved conversation, with the answer's figures when it is one, and a question's
    images."""

    role: str
    content: str
    created: float = field(default_factory=time.time)
    ttft: float | None = None
    tokens_per_s: float | None = None
    tokens: int | None = None
    images: list[SavedImage] = field(default_factory=list)

    def sent(self) -> dict[str, Any]:
        """The message as a chat request sends it: its text, and its images as image parts after it."""
        if not self.images:
            return {"role": self.role, "content": self.content}
        return {"role": self.role, "content": [{"type": "text", "text": self.content}, *(
            {"type": "image_url", "image_url": {"url": image.data_url()}} for image in self.images)]}


@dataclass
class ChatSession:
    """A saved conversation: its model, system prompt, parameters and messages."""

    id: int
    created: float
    updated: float
    kind: str
    model_uid: str
    model_name: str | None
    system: str | None
    params: dict[str, Any]
    messages: list[ChatMessage] = field(default_factory=list)
    #: Messages in the session (filled by `sessions()`, which does not load them).
    count: int = 0
    #: The first user message, cut short: how a list names the session.
    title: str = ""

    def conversation(self) -> list[dict[str, Any]]:
        """The messages as a chat request sends them (the system prompt first)."""
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + [m.sent() for m in self.messages]

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for message, saved in zip(data["messages"], self.messages, strict=True):
            message["images"] = [image.as_dict() for image in saved.images]
        return data


class ChatStore:
    """The saved conversations of one XITUI_HOME (an SQLite file any process or thread may use)."""

    def __init__(self, home: Path):
        self.path = home / FILE_NAME
        self._ready = False

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            if not self._ready:  # SQLite gives its -wal and -shm files the database file's mode
                private_file(self.path)
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None)
        except (sqlite3.Error, OSError) as exc:
            raise ChatStoreError(f"cannot open the chat store {self.path}: {exc}") from None
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            if not self._ready:
                _prepare(conn)
                self._ready = True
            yield conn
        except sqlite3.DatabaseError as exc:
            raise ChatStoreError(f"the chat store {self.path} failed: {exc}") from None
        finally:
            conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction: all of it is written, or none of it."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- writing ---------------------------------------------------------------------------------

    def new_session(self, kind: str, model_uid: str, model_name: str | None = None, system: str | None = None,
                    params: dict[str, Any] | None = None, messages: tuple[ChatMessage, ...] = ()) -> int:
        """A new session with its first messages, in one transaction: no reader ever sees it empty."""
        now = time.time()
        with self._write() as conn:
            cur = conn.execute(
                "INSERT INTO sessions (created, updated, kind, model_uid, model_name, system, params) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (now, now, kind, model_uid, model_name, system or None, json.dumps(params or {})))
            session_id = int(cur.lastrowid or 0)
            self._insert(conn, session_id, messages)
            return session_id

    def add(self, session_id: int, *messages: ChatMessage) -> None:
        """Append messages (a question and its answer together, so neither is saved without the other)."""
        with self._write() as conn:
            self._exists(conn, session_id)
            self._insert(conn, session_id, messages)
            conn.execute("UPDATE sessions SET updated = ? WHERE id = ?", (time.time(), session_id))

    @staticmethod
    def _insert(conn: sqlite3.Connection, session_id: int, messages: tuple[ChatMessage, ...]) -> None:
        for m in messages:
            cur = conn.execute(
                "INSERT INTO messages (session_id, created, role, content, ttft, tokens_per_s, tokens) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (session_id, m.created, m.role, m.content, m.ttft, m.tokens_per_s, m.tokens))
            for position, image in enumerate(m.images):
                digest = image.sha256
                conn.execute("INSERT OR IGNORE INTO images (sha256, kind, data) VALUES (?, ?, ?)",
                             (digest, image.kind, image.data))
                conn.execute("INSERT INTO message_images (message_id, position, sha256, name) VALUES (?, ?, ?, ?)",
                             (cur.lastrowid, position, digest, image.name))

    def update(self, session_id: int, *, system: str | None = None, params: dict[str, Any] | None = None,
               model_uid: str | None = None) -> None:
        """Change a session's system prompt, parameters or model (a resumed session on another uid)."""
        with self._write() as conn:
            self._exists(conn, session_id)
            if system is not None:
                conn.execute("UPDATE sessions SET system = ? WHERE id = ?", (system or None, session_id))
            if params is not None:
                conn.execute("UPDATE sessions SET params = ? WHERE id = ?", (json.dumps(params), session_id))
            if model_uid is not None:
                conn.execute("UPDATE sessions SET model_uid = ? WHERE id = ?", (model_uid, session_id))
            conn.execute("UPDATE sessions SET updated = ? WHERE id = ?", (time.time(), session_id))

    def delete(self, session_id: int) -> None:
        with self._write() as conn:
            self._exists(conn, session_id)
            conn.execute("DELETE FROM messages WHERE session_id = ?", (session_id,))
            conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
            # an image no other message sends goes with the last one that did
            conn.execute("DELETE FROM images WHERE sha256 NOT IN (SELECT sha256 FROM message_images)")

    @staticmethod
    def _exists(conn: sqlite3.Connection, session_id: int) -> None:
        if conn.execute("SELECT 1 FROM sessions WHERE id = ?", (session_id,)).fetchone() is None:
            raise NotFoundError(f"no saved chat session {session_id} (see `xitui chats list`)")

    # --- reading ---------------------------------------------------------------------------------

    def sessions(self, model_uid: str | None = None, kind: str | None = None, limit: int = 50) -> list[ChatSession]:
        """Sessions, the most recently used first (messages not loaded; `count` and `title` filled)."""
        where, args = [], []
        if model_uid is not None:
            where.append("s.model_uid = ?")
            args.append(model_uid)
        if kind is not None:
            where.append("s.kind = ?")
            args.append(kind)
        sql = ("SELECT s.*, (SELECT COUNT(*) FROM messages m WHERE m.session_id = s.id) AS count, "
               "(SELECT content FROM messages m WHERE m.session_id = s.id AND m.role = 'user' ORDER BY m.id "
               "LIMIT 1) AS first FROM sessions s" + (" WHERE " + " AND ".join(where) if where else "")
               + " ORDER BY s.updated DESC, s.id DESC LIMIT ?")
        with self._connect() as conn:
            rows = conn.execute(sql, (*args, limit)).fetchall()
        return [self._session(row, count=row["count"], title=_title(row["first"])) for row in rows]

    def get(self, session_id: int) -> ChatSession:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                raise NotFoundError(f"no saved chat session {session_id} (see `xitui chats list`)")
            found = conn.execute("SELECT * FROM messages WHERE session_id = ? ORDER BY id", (session_id,)).fetchall()
            pictures: dict[int, list[SavedImage]] = {}
            for p in conn.execute(
                    "SELECT mi.message_id, mi.name, i.kind, i.data FROM message_images mi JOIN messages m ON "
                    "m.id = mi.message_id JOIN images i ON i.sha256 = mi.sha256 WHERE m.session_id = ? "
                    "ORDER BY mi.message_id, mi.position", (session_id,)):
                pictures.setdefault(p["message_id"], []).append(SavedImage(p["name"], p["kind"], bytes(p["data"])))
        messages = [ChatMessage(role=m["role"], content=m["content"], created=m["created"], ttft=m["ttft"],
                                tokens_per_s=m["tokens_per_s"], tokens=m["tokens"], images=pictures.get(m["id"], []))
                    for m in found]
        first = next((m.content for m in messages if m.role == "user"), None)
        return self._session(row, messages=messages, count=len(messages), title=_title(first))

    def last(self, kind: str | None = None, model_uid: str | None = None) -> ChatSession | None:
        found = self.sessions(model_uid=model_uid, kind=kind, limit=1)
        return self.get(found[0].id) if found else None

    def search(self, text: str, limit: int = 50) -> list[dict[str, Any]]:
        """Messages matching `text` (FTS5: words, "a phrase", prefix*), best first, with a snippet."""
        query = text.strip()
        if not query:
            raise ChatStoreError("search: give some words to look for")
        if not any(ch in query for ch in '"*') and " OR " not in query:
            # plain words: each must appear; quoted so punctuation is never read as FTS syntax
            query = " ".join('"' + word.replace('"', '""') + '"' for word in query.split())
        sql = ("SELECT m.session_id, m.role, m.created, snippet(messages_fts, 0, '[', ']', '…', 12) AS snippet, "
               "s.model_uid FROM messages_fts JOIN messages m ON m.id = messages_fts.rowid "
               "JOIN sessions s ON s.id = m.session_id WHERE messages_fts MATCH ? ORDER BY rank LIMIT ?")
        try:
            with self._connect() as conn:
                rows = conn.execute(sql, (query, limit)).fetchall()
        except ChatStoreError as exc:
            if "fts5" in str(exc) or "syntax" in str(exc):
                raise ChatStoreError(f"search: {text!r} is not a search the index reads") from None
            raise
        return [dict(row) for row in rows]

    @staticmethod
    def _session(row: sqlite3.Row, **extra: Any) -> ChatSession:
        try:
            params = json.loads(row["params"] or "{}")
        except ValueError:
            params = {}
        return ChatSession(id=row["id"], created=row["created"], updated=row["updated"], kind=row["kind"],
                           model_uid=row["model_uid"], model_name=row["model_name"], system=row["system"],
                           params=params, **extra)


def answered(messages: list[ChatMessage]) -> list[dict[str, Any]]:
    """A saved conversation as requests send it, images and all: a question whose answer never came (the
    process ended, or the answer was stopped before its first word) is left out, so user and assistant still
    take turns."""
    kept: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        following = messages[i + 1] if i + 1 < len(messages) else None
        if message.role == "user" and (following is None or following.role != "assistant"):
            continue
        kept.append(message.sent())
    return kept


def _title(text: str | None, width: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --- export ------------------------------------------------------------------------------------------


def _when(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))


def write_images(session: ChatSession, folder: Path) -> dict[str, Path]:
    """Each image the session's questions sent, written once into `folder` (named by its hash); where each is,
    by its SHA-256."""
    import mimetypes

    from xitui.core.files import atomic_write

    written: dict[str, Path] = {}
    for message in session.messages:
        for image in message.images:
            digest = image.sha256
            if digest not in written:
                suffix = mimetypes.guess_extension(image.kind) or ".img"
                written[digest] = folder / f"{digest[:16]}{suffix}"
                atomic_write(written[digest], image.data)
    return written


def _image_line(image: SavedImage, written: dict[str, Path] | None) -> str:
    """Where an image was sent, in a Markdown document: a link to its file when written, else what it was."""
    digest = image.sha256
    if written is not None and digest in written:
        return f"![{_markdown_text(image.name)}]({written[digest].as_posix()})"
    size = len(image.data)
    shown = f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{round(size / 1024)} KB" if size >= 1024 else \
        f"{size} bytes"
    return f"*[image: {_markdown_text(image.name)}, {image.kind}, {shown}, sha256 {digest[:12]}]*"


def _markdown_text(text: str) -> str:
    """A file's name as Markdown text (its brackets and emphasis marks not read as markup)."""
    return "".join("\\" + ch if ch in "\\[]()*_`<>!" else ch for ch in " ".join(text.split()))


def to_markdown(session: ChatSession, written: dict[str, Path] | None = None) -> str:
    """A session as a Markdown document: a heading, the facts, then each turn; a question's images where they
    were sent (links to them where `write_images` wrote them)."""
    lines = [f"# Chat {session.id} with {session.model_uid}", ""]
    facts = [f"- started: {_when(session.created)}", f"- model: {session.model_uid}"
             + (f" ({session.model_name})" if session.model_name and session.model_name != session.model_uid else "")]
    if session.params:
        facts.append("- parameters: " + ", ".join(f"{k} {v}" for k, v in sorted(session.params.items())))
    lines += facts + [""]
    if session.system:
        lines += ["## System", "", session.system, ""]
    names = {"user": "You", "assistant": session.model_uid}
    if session.kind == "generate":
        names = {"user": "Prompt", "assistant": "Completion"}
    for message in session.messages:
        lines += [f"## {names.get(message.role, message.role)}", "", message.content.rstrip(), ""]
        if message.images:
            lines += [*(_image_line(image, written) for image in message.images), ""]
        if message.role == "assistant" and message.tokens:
            rate = f", {message.tokens_per_s:.1f} tokens/s" if message.tokens_per_s else ""
            first = f"first token {message.ttft * 1000:.0f} ms, " if message.ttft is not None else ""
            lines += [f"*{first}{message.tokens} tokens{rate}*", ""]
    return "\n".join(lines).rstrip() + "\n"


def to_json(session: ChatSession) -> str:
    return json.dumps(session.as_dict(), indent=2, ensure_ascii=False) + "\n"
