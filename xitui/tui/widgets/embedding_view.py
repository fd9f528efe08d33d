"""What the chat pane shows for an embedding model: two texts and the cosine similarity of their vectors."""

from __future__ import annotations

import math

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Button, Input, Label

from xitui.core.safe_text import safe_line
from xitui.tui.widgets.model_view import ModelView


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)


class EmbeddingView(ModelView, Vertical):
    """Two inputs, a button, the similarity; asks the model `uid` through `client`."""

    def compose(self) -> ComposeResult:
        yield Input(placeholder="first text", id="embed-a")
        yield Input(placeholder="second text", id="embed-b")
        with Horizontal():
            yield Button("cosine similarity", id="embed-go")
            yield Label("", id="embed-result", markup=False)  # an error quotes the server

    @on(Button.Pressed, "#embed-go")
    @on(Input.Submitted, "#embed-b")
    def _similarity(self) -> None:
        first = self.query_one("#embed-a", Input).value
        second = self.query_one("#embed-b", Input).value
        if self.uid is None or not first or not second:
            self.notify("pick an embedding model and write two texts", severity="warning")
            return
        self.query_one("#embed-result", Label).update("…")
        self._embed(self.uid, first, second)

    @work(thread=True, exclusive=True, group="embed")
    def _embed(self, uid: str, first: str, second: str) -> None:
        try:
            handle = self.handle(uid)
            data = handle.create_embedding([first, second])["data"]
            a, b = data[0]["embedding"], data[1]["embedding"]
            text = f"cosine similarity {cosine(a, b):.4f} ({len(a)} dimensions)"
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            text = f"error: {safe_line(exc)}"
        self.app.call_from_thread(self.query_one("#embed-result", Label).update, text)
