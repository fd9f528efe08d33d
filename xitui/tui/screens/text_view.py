"""Read-only views over the dashboard: a spec as highlighted JSON, a worker's log followed live."""

from __future__ import annotations

import time
from typing import Any

from rich.syntax import Syntax
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Log, Static

from xitui.core.safe_text import StreamFilter, safe_json, safe_line


class SpecView(ModalScreen[None]):
    """A registration's spec as highlighted JSON."""

    DEFAULT_CSS = """
    SpecView { align: center middle; }
    SpecView > Vertical { width: 90%; height: 90%; border: thick $primary; background: $surface; }
    """
    BINDINGS = [Binding("escape,q", "dismiss", "close", id="view.close")]

    def __init__(self, title: str, spec: dict[str, Any]) -> None:
        super().__init__()
        self.title_text, self.spec = title, spec

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"{safe_line(self.title_text)}   (Esc closes)", markup=False)  # a server's names
            with VerticalScroll():
                yield Static(Syntax(safe_json(self.spec), "json",
                                    background_color="default", word_wrap=True))


class LogView(ModalScreen[None]):
    """A worker's log, followed: new lines appear as the worker writes them (xitui's log route)."""

    DEFAULT_CSS = """
    LogView { align: center middle; }
    LogView > Vertical { width: 95%; height: 90%; border: thick $primary; background: $surface; }
    """
    BINDINGS = [Binding("escape,q", "dismiss", "close", id="log.close")]

    def __init__(self, uid: str, client: Any) -> None:
        super().__init__()
        self.uid = uid
        self.client = client
        self.log_offset = -16384

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"log of {safe_line(self.uid)}, followed live   (Esc closes)", markup=False)
            yield Log(id="log", highlight=False)

    def on_mount(self) -> None:
        self.follow()

    @work(thread=True, exclusive=True)
    def follow(self) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()
        # the log quotes requests (what a worker choked on): made safe as it comes, as `xitui logs` does
        shown = StreamFilter()
        while not worker.is_cancelled:
            try:
                part = self.client.model_logs(self.uid, offset=self.log_offset)
            except Exception as exc:  # noqa: BLE001 - Xinference has no log route; a gone model has no log
                self.app.call_from_thread(self.query_one(Log).write_line, f"(no log: {safe_line(exc)})")
                return
            self.log_offset = part.get("offset", self.log_offset)
            text = shown.feed((part.get("text") or "").replace("\r\n", "\n").replace("\r", "\n"))
            if text:
                self.app.call_from_thread(self.query_one(Log).write, text)
            for _ in range(10):
                if worker.is_cancelled:
                    return
                time.sleep(0.05)

