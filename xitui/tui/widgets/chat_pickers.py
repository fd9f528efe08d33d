"""The chat pane's top line: which running model, which saved conversation, and the system prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Input, Select

from xitui.core.safe_text import safe_line


class ChatPickers(Horizontal):
    """Two pickers and the system prompt; a choice made here is posted as `ModelPicked`/`SessionPicked`
    (choices set from code post nothing)."""

    @dataclass
    class ModelPicked(Message):
        uid: str | None

    @dataclass
    class SessionPicked(Message):
        session_id: int | None

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._models: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield Select([], prompt="pick a model", id="chat-model", allow_blank=True, compact=True)
        yield Select([], prompt="new conversation", id="chat-session", allow_blank=True, compact=True)
        yield Input(placeholder="system prompt (chat models)", id="chat-system", compact=True)

    @property
    def system(self) -> str:
        return self.query_one("#chat-system", Input).value.strip()

    @system.setter
    def system(self, text: str) -> None:
        self.query_one("#chat-system", Input).value = text

    def show_models(self, options: list[tuple[str, str]], current: str | None) -> None:
        """Offer these models (label, uid); redrawn only when the list or a label changed."""
        if options == self._models:
            return
        self._models = options
        self._offer("#chat-model", options, current)

    def pick_model(self, uid: str) -> None:
        select = self.query_one("#chat-model", Select)
        if select.value != uid:
            with self.prevent(Select.Changed):
                select.value = uid

    def show_sessions(self, options: list[tuple[str, int]], current: int | None) -> None:
        self._offer("#chat-session", options, current)

    def _offer(self, selector: str, options: list[tuple[str, Any]], current: Any) -> None:
        """Labels quote the server (uids) and saved conversations: made safe, shown as text, never markup."""
        try:
            select = self.query_one(selector, Select)
            with self.prevent(Select.Changed):
                select.set_options([(Text(safe_line(label), end=""), value) for label, value in options])
                select.value = current if current in [v for _, v in options] else Select.NULL
        except NoMatches:
            # A list read on a thread can arrive while the dashboard closes and the picker's parts are gone
            return

    def new_session(self) -> None:
        """Show "new conversation" (the one shown is no longer the one being written)."""
        select = self.query_one("#chat-session", Select)
        if select.value is not Select.NULL:
            with self.prevent(Select.Changed):
                select.value = Select.NULL

    @on(Select.Changed, "#chat-model")
    def _model(self, event: Select.Changed) -> None:
        event.stop()
        self.post_message(self.ModelPicked(None if event.value is Select.NULL else str(event.value)))

    @on(Select.Changed, "#chat-session")
    def _session(self, event: Select.Changed) -> None:
        event.stop()
        # Select.Changed types its value with Select's type variable, unbound here: the sessions' values are ints
        self.post_message(self.SessionPicked(None if event.value is Select.NULL else int(cast(int, event.value))))
