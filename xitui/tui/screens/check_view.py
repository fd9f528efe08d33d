"""`xitui check` over the dashboard: what a registration promises, tried live on the server, one row each;
where a row fails, its fix, registered in place of the current spec after a press of the fix button.

The check runs on a daemon thread of its own, not a Textual worker: quitting would wait out a launch. Closing
the view stops it at the next step; the model launched for the check is let go either way.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DataTable, Label, Static

from xitui.core.safe_text import safe_line

MARKS = {"ok": ("ok", "green"), "warn": ("warn", "yellow"), "fail": ("FAIL", "bold red"), "skip": ("skip", "dim")}


class Closed(Exception):
    """The view was closed while the check ran: the check stops at its next step."""


class CheckView(ModalScreen[bool]):
    """The check of one registration; dismissed with True when the corrected spec was registered."""

    DEFAULT_CSS = """
    CheckView { align: center middle; }
    CheckView > Vertical { width: 95%; height: auto; max-height: 90%; border: thick $primary;
                           background: $surface; padding: 0 1; }
    CheckView DataTable { height: auto; max-height: 16; margin: 1 0; }
    CheckView #check-state { color: $text-muted; }
    CheckView Horizontal { height: auto; align-horizontal: right; }
    CheckView Button { margin-left: 1; }
    CheckView #fix { display: none; }
    CheckView #fix.-offered { display: block; }
    """
    BINDINGS = [Binding("escape,q", "close", "close", id="check.close")]

    def __init__(self, client: Any, model_type: str, name: str) -> None:
        super().__init__()
        self.client, self.model_type, self.model_name = client, model_type, name
        self.report: Any = None
        self.fixed = False
        self._gone = threading.Event()
        self._started = time.monotonic()
        self._step = "starting"

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(f"check of {safe_line(self.model_type)} {safe_line(self.model_name)}   (Esc closes)",
                        markup=False)  # a server's names
            yield Static("starting", id="check-state", markup=False)
            table: DataTable = DataTable(id="check-rows", cursor_type="none", zebra_stripes=True)
            yield table
            yield Static("", id="check-fix", markup=False)
            with Horizontal():
                yield Button("Register the corrected spec", id="fix", variant="warning", disabled=True)
                yield Button("Close", id="close")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in ("check", "result", "figure", "likely cause", "fix"):
            table.add_column(column, key=column)
        self.query_one("#close", Button).focus()
        self._ticker = self.set_interval(1.0, self._tick)
        threading.Thread(target=self._run, daemon=True, name=f"check-{self.model_name}").start()

    def on_unmount(self) -> None:
        self._gone.set()

    def _later(self, call: Callable[..., Any], *args: Any) -> None:
        """Run `call` on the app's thread, unless the view (or the app) is gone by then."""
        def guarded() -> None:
            if not self._gone.is_set():
                call(*args)

        with contextlib.suppress(RuntimeError):  # the app has stopped
            self.app.call_from_thread(guarded)

    def _said(self, what: str) -> None:
        if self._gone.is_set():
            raise Closed
        self._later(self._step_to, what)

    def _run(self) -> None:
        from xitui.client.check import check

        try:
            report = check(self.client, self.model_name, self.model_type, said=self._said)
        except Closed:
            return
        except Exception as exc:  # noqa: BLE001 - shown in the view, never a crash of the dashboard
            self._later(self._stopped, f"the check stopped: {' '.join(safe_line(exc).split())}")
            return
        self._later(self._show, report)

    def _step_to(self, what: str) -> None:
        self._step = what
        self._tick()

    def _tick(self) -> None:
        self._state(f"{self._step} ({time.monotonic() - self._started:.0f} s)")

    def _state(self, text: str) -> None:
        self.query_one("#check-state", Static).update(text)

    def _stopped(self, text: str) -> None:
        self._ticker.stop()
        self._state(text)

    def _show(self, report: Any) -> None:
        self.report = report
        self._ticker.stop()
        table = self.query_one(DataTable)
        for row in report.rows:
            mark, style = MARKS.get(row.status, (row.status, ""))
            cells = [Text(safe_line(cell), end="") for cell in (row.name, row.figure, row.cause or "-", row.fix_text)]
            cells.insert(1, Text(mark, style=style, end=""))  # Text: cells quote answers, never read as markup
            table.add_row(*cells)
        self._state(report.summary)
        if report.fixes:
            from xitui.client.check import fix_text

            self.query_one("#check-fix", Static).update(f"the fix: {safe_line(fix_text(report.fixes))}")
            button = self.query_one("#fix", Button)
            button.disabled = False
            button.add_class("-offered")
            button.focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "close":
            self.action_close()
        elif event.button.id == "fix" and self.report is not None:
            event.button.disabled = True
            self._state("registering the corrected spec")
            fixes = self.report.fixes
            threading.Thread(target=self._register_fix, args=(fixes,), daemon=True).start()

    def _register_fix(self, fixes: dict[str, Any]) -> None:
        from xitui.client.check import register_fixed

        try:
            register_fixed(self.client, self.model_type, self.model_name, fixes)
        except Exception as exc:  # noqa: BLE001 - shown in the view
            self._later(self._state, f"not registered: {' '.join(safe_line(exc).split())}")
            return
        self.fixed = True
        self._later(self._state, f"registered the corrected {safe_line(self.model_name)}: check it again with k")

    def action_close(self) -> None:
        self.dismiss(self.fixed)
