"""The chat pane's input: multi-line, Enter sends, Alt+Enter or Ctrl+N adds a line, up/down recall earlier
inputs (from the first or last line, so moving inside a long input still works), Tab completes the path of
`/image PATH` as a shell does."""

from __future__ import annotations

import os
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
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

    @dataclass
    class Choices(Message):
        """Tab found several paths that go on differently: the names to choose from."""

        names: list[str]

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
        if event.key == "tab" and self.text.startswith(IMAGE_COMMAND) and "\n" not in self.text:
            event.prevent_default()
            event.stop()
            completed, choices = complete_path(self.text[len(IMAGE_COMMAND):])
            self.load_text(IMAGE_COMMAND + completed)
            self.move_cursor(self.document.end)
            if len(choices) > 1:
                self.post_message(self.Choices(choices))
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


IMAGE_COMMAND = "/image "
#: Names a completion lists at most (a folder of thousands is not read out), and entries it reads at most.
MAX_CHOICES = 200
MAX_ENTRIES = 100_000


def complete_path(typed: str) -> tuple[str, list[str]]:
    """`typed` completed as far as the paths it may name agree (a folder's name ends with a slash), and the
    names it may still go on to when there are several. A path that names nothing is left as it is."""
    head, _, start = typed.rpartition("/")
    folder = Path(os.path.expanduser(head + "/" if head or typed.startswith("/") else "."))
    hidden = start.startswith(".")  # (a dot file is offered once the name begins with its dot)
    names = []
    try:
        with os.scandir(folder) as entries:
            for entry in islice(entries, MAX_ENTRIES):  # (50,000 entries: a few milliseconds)
                if entry.name.startswith(start) and (hidden or not entry.name.startswith(".")):
                    names.append(entry.name + ("/" if _is_folder(entry) else ""))
    except (OSError, ValueError):  # unreadable, gone, or a name no path can hold (a NUL)
        return typed, []
    if not names:
        return typed, []
    names.sort()
    common = os.path.commonprefix(names)
    prefix = head + "/" if head or typed.startswith("/") else ""
    return prefix + common, names[:MAX_CHOICES] if len(names) > 1 else []


def _is_folder(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a link in a loop, or one it may not follow
        return False
