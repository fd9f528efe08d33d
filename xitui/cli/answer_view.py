"""An answer as it streams in: Markdown rendered by rich on a terminal, the text as written anywhere else;
either way made safe as it comes (core/safe_text.StreamFilter: the model's escape sequences never reach the
terminal, not even split between two pieces).

On a terminal the finished blocks (paragraphs, lists, closed code fences) are printed once and for good,
and only the block still being written is redrawn (rich Live): the redrawn part stays a few lines high, so
a long answer never has to be repainted from above the top of the screen, and nothing flickers. Frames are
paced (terminal/pacing.py): between them a piece only joins the text, so drawing never takes the model's CPU.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from xitui.core.safe_text import StreamFilter, safe_line
from xitui.terminal.pacing import FramePacer

#: The share of a core the terminal view draws with (bench/watch_cost.py: at 3 % the model kept 0.95-0.98 of
#: its piped speed, at 1.5 % 0.97-0.98; the dashboard's frames, which lay out more, keep pacing's 3 %).
TERMINAL_SHARE = 0.015


def _settled_end(text: str, start: int = 0) -> int:
    """Where the finished blocks end: the last blank line outside a code fence (`start`, where the text's
    printed part ends and no fence is open, when none finished after it)."""
    end = start
    fenced = False
    pos = start
    for line in text[start:].splitlines(keepends=True):
        pos += len(line)
        stripped = line.strip()
        if stripped.startswith(("```", "~~~")):
            fenced = not fenced
            if not fenced and pos < len(text):
                end = pos  # a closed code block is finished
        elif not stripped and not fenced and pos < len(text):
            end = pos
    return end


class AnswerView:
    """Feed it pieces with `add`; `close` ends the answer (and prints its figures on a terminal)."""

    def __init__(self, rendered: bool, console: Any = None):
        self.rendered = rendered
        #: What has been shown: the answer's pieces made safe.
        self.text = ""
        self._safe = StreamFilter()
        self._printed = 0
        self._live: Any = None
        self.console = console
        if rendered:
            from rich.console import Console
            from rich.live import Live

            from xitui.terminal.markdown import AnswerMarkdown  # noqa: F401 - loaded now, before the answer streams

            self.console = console or Console(highlight=False)
            # redrawn from this thread only, at the pacer's frames: no second thread writes to the terminal
            self._live = Live(console=self.console, transient=True, auto_refresh=False)
            self._live.start()
            self.pacer = FramePacer(share=TERMINAL_SHARE)

    def add(self, piece: str) -> None:
        piece = self._safe.feed(piece)
        if not piece:
            return
        self.text += piece
        if not self.rendered:
            sys.stdout.write(piece)
            sys.stdout.flush()
            return
        if self.pacer.due():
            self._frame()

    def _frame(self) -> None:
        """Print the blocks finished since the last frame, redraw the one being written."""
        from xitui.terminal.markdown import AnswerMarkdown

        start = time.thread_time()
        end = _settled_end(self.text, self._printed)
        if end > self._printed:
            self._live.update("", refresh=True)
            self.console.print(AnswerMarkdown(self.text[self._printed:end]))
            self._printed = end
        self._live.update(AnswerMarkdown(self.text[self._printed:]), refresh=True)
        self.pacer.drawn(time.thread_time() - start)  # the frame alone: reading the stream is not drawing

    def close(self, figures: str | None = None) -> None:
        """The answer is over: print what is left, then (on a terminal) `figures` as one dim line."""
        if not self.rendered:
            return
        from xitui.terminal.markdown import AnswerMarkdown

        self._live.update("", refresh=True)
        self._live.stop()
        rest = self.text[self._printed:]
        if rest.strip():
            self.console.print(AnswerMarkdown(rest))
        if figures:  # they may end with the server's error
            self.console.print(safe_line(figures), style="dim", markup=False)
