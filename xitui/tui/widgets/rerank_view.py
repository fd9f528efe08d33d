"""What the chat pane shows for a rerank model: a query, passages one per line, and the passages ranked by
the model's relevance score."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Static, TextArea

from xitui.core.safe_text import safe_line
from xitui.tui.widgets.model_view import ModelView


def passages_of(text: str) -> list[str]:
    """The passages written in the box: one per non-blank line."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def ranking_table(documents: list[str], answer: dict[str, Any]) -> Table:
    """The server's results as rows: rank, score, passage (the best first)."""
    table = Table(box=None, show_edge=False, pad_edge=False, expand=True)
    table.add_column("#", justify="right", width=3)
    table.add_column("score", justify="right", width=7)
    table.add_column("passage", ratio=1, overflow="fold")
    for rank, result in enumerate(answer.get("results") or [], 1):
        table.add_row(str(rank), f"{result['relevance_score']:.4f}", Text(safe_line(documents[result["index"]])))
    return table


class RerankView(ModelView, VerticalScroll):
    """A query input, a passages box, a button and the ranking; asks the model `uid` through `client`."""

    DEFAULT_CSS = """
    RerankView { height: 1fr; }
    RerankView #rerank-documents { height: 7; }
    RerankView #rerank-bar { height: 3; }
    RerankView #rerank-status { padding: 1 0 0 2; color: $text-muted; }
    RerankView #rerank-result { height: auto; margin-top: 1; }
    """

    def compose(self) -> ComposeResult:
        yield Input(placeholder="query", id="rerank-query")
        area = TextArea(id="rerank-documents", soft_wrap=True, show_line_numbers=False)
        area.border_title = "passages, one per line"
        yield area
        with Horizontal(id="rerank-bar"):
            yield Button("rank", id="rerank-go")
            yield Static("", id="rerank-status", markup=False)  # an error quotes the server
        yield Static("", id="rerank-result")

    @on(Button.Pressed, "#rerank-go")
    @on(Input.Submitted, "#rerank-query")
    def _rank(self) -> None:
        query = self.query_one("#rerank-query", Input).value.strip()
        documents = passages_of(self.query_one("#rerank-documents", TextArea).text)
        if self.uid is None or not query or not documents:
            self.notify("pick a rerank model, write a query and passages (one per line)", severity="warning")
            return
        self.query_one("#rerank-status", Static).update("ranking…")
        self._ask(self.uid, query, documents)

    @work(thread=True, exclusive=True, group="rerank")
    def _ask(self, uid: str, query: str, documents: list[str]) -> None:
        start = time.monotonic()
        result: Table | str
        try:
            handle = self.handle(uid)
            answer = handle.rerank(documents, query, return_len=True)
            result = ranking_table(documents, answer)
            tokens = ((answer.get("meta") or {}).get("tokens") or {}).get("input_tokens")
            status = (f"{len(documents)} passages in {(time.monotonic() - start) * 1000:.0f} ms"
                      + (f", {tokens} tokens" if tokens else ""))
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            result, status = "", f"error: {safe_line(exc)}"
        self.app.call_from_thread(self._show, result, status)

    def _show(self, result: Table | str, status: str) -> None:
        shown = self.query_one("#rerank-result", Static)
        shown.update(result)
        self.query_one("#rerank-status", Static).update(status)
        self.call_after_refresh(shown.scroll_visible)  # on a short terminal the ranking is below the fold
