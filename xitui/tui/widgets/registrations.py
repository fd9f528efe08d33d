"""Registrations (LLM and embedding, builtin and custom), the bundled demo models first; type to filter."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Input

from xitui.tui.data import REGISTRATION_COLUMNS, registration_row, sort_registrations


class Registrations(Vertical):
    """A filter line over the registrations table; `selected` is the registration under the cursor."""

    DEFAULT_CSS = """
    Registrations { height: 1fr; }
    Registrations > Input { height: 1; margin-bottom: 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.items: list[dict[str, Any]] = []
        self._shown: list[str] = []
        self._rows: list[tuple[str, ...]] = []

    def compose(self) -> ComposeResult:
        yield Input(placeholder="type to filter registrations", id="registration-filter", compact=True)
        table: DataTable = DataTable(cursor_type="row", zebra_stripes=True, id="registration-table")
        yield table

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for name in REGISTRATION_COLUMNS:
            table.add_column(name, key=name)

    def show(self, items: list[dict[str, Any]]) -> None:
        self.items = sort_registrations(items)
        self._refresh_rows()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._refresh_rows()

    def _refresh_rows(self) -> None:
        table = self.query_one(DataTable)
        needle = self.query_one(Input).value.strip().lower()
        wanted = [item for item in self.items
                  if not needle or needle in " ".join(registration_row(item)).lower()]
        keys = [f"{item['model_type']}/{item['model_name']}" for item in wanted]
        rows = [registration_row(item) for item in wanted]
        if keys == self._shown and rows == self._rows:
            return
        selected = self.selected
        table.clear()
        for key, row in zip(keys, rows, strict=True):
            table.add_row(*(Text(cell, end="") for cell in row), key=key)  # Text: a str cell is read as markup
        self._shown, self._rows = keys, rows
        if selected is not None:
            key = f"{selected['model_type']}/{selected['model_name']}"
            if key in keys:
                table.move_cursor(row=keys.index(key))

    @property
    def selected(self) -> dict[str, Any] | None:
        table = self.query_one(DataTable)
        if not self._shown or table.cursor_row < 0 or table.cursor_row >= len(self._shown):
            return None
        key = self._shown[table.cursor_row]
        return next((i for i in self.items if f"{i['model_type']}/{i['model_name']}" == key), None)
