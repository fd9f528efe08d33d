"""The chat pane's input: multi-line, Enter sends, Alt+Enter or Ctrl+N adds a line, up/down recall earlier
inputs (from the first or last line, so moving inside a long input still works)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from textual import events
from textual.message import Message
from textual.widgets import TextArea


class PromptInput(TextArea):
    """The chat input: Enter sends (posts Submitted), other keys edit several lines."""

    DEFAULT_CSS = """
    PromptInput { height: auto; max-height: 8; min-height: 3; }
    """

    @dataclass
    class Submitted(Message):
        text: str

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(soft_wrap=True, show_line_numbers=False, **kwargs)
        self.inputs: list[str] = []
        self._recall: int | None = None

    async def _on_key(self, event: events.Key) -> None:
        if event.key == "enter":
            event.prevent_default()
            event.stop()
            text = self.text
            if text.strip():
                if not self.inputs or self.inputs[-1] != text:
                    self.inputs.append(text)
                self._recall = None
                self.clear()
                self.post_message(self.Submitted(text))
            return
        if event.key in ("alt+enter", "ctrl+n", "ctrl+j"):
            event.prevent_default()
            event.stop()
            self.insert("\n")
            return
        row = self.cursor_location[0]
        if event.key == "up" and row == 0 and self.inputs:
            event.prevent_default()
            event.stop()
            self._recall = len(self.inputs) - 1 if self._recall is None else max(0, self._recall - 1)
            self.load_text(self.inputs[self._recall])
            return
        if event.key == "down" and row == self.document.line_count - 1 and self._recall is not None:
            event.prevent_default()
            event.stop()
            self._recall += 1
            if self._recall >= len(self.inputs):
                self._recall = None
                self.load_text("")
            else:
                self.load_text(self.inputs[self._recall])
            return
        await super()._on_key(event)
