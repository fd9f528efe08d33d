"""Running models, one row each, updated in place by row key (never cleared, so the cursor stays put)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from xitui.tui.data import MODEL_COLUMNS, Snapshot, gpu_memory_by_model, model_row


class ModelsTable(DataTable):
    """The models table; `selected_uid` is the model under the cursor."""

    DEFAULT_CSS = """
    ModelsTable { height: 1fr; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.models: dict[str, dict[str, Any]] = {}
        self._rows: dict[str, tuple[str, ...]] = {}

    def on_mount(self) -> None:
        for name in MODEL_COLUMNS:
            self.add_column(name, key=name)

    @property
    def selected_uid(self) -> str | None:
        if not self._rows or self.cursor_row < 0 or self.cursor_row >= self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return str(key.value) if key.value is not None else None

    def show(self, snapshot: Snapshot, now: float | None = None) -> None:
        """Bring the rows to `snapshot`: add new models, update changed cells, drop the gone."""
        now = snapshot.taken_at if now is None else now
        held = gpu_memory_by_model(snapshot.resources)
        self.models = snapshot.models
        for uid in [uid for uid in self._rows if uid not in snapshot.models]:
            self.remove_row(uid)
            del self._rows[uid]
        for uid, model in snapshot.models.items():
            cells = model_row(uid, model, held, now)
            old = self._rows.get(uid)
            # cells as Text: DataTable reads a str as markup (a model named `[bold]x[/` would crash it)
            if old is None:
                self.add_row(*(Text(cell, end="") for cell in cells), key=uid)
            else:
                for column, (before, after) in zip(MODEL_COLUMNS, zip(old, cells, strict=True), strict=True):
                    if before != after:
                        self.update_cell(uid, column, Text(after, end=""))
            self._rows[uid] = cells
