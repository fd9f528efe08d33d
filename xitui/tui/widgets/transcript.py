"""The conversation as it reads on screen: questions, answers streamed in as Markdown, the figures under
each answer. It follows the bottom while the user is there, and leaves them be when they scroll up.

While an answer streams, its pieces only join a list (`add`, from the thread that reads the stream); frames
draw what came since the last one at the pace terminal/pacing.py sets, so drawing takes at most a small share
of a core however fast the model writes, and the text catches up at the next frame.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from textual.containers import VerticalScroll
from textual.timer import Timer
from textual.widgets import Collapsible, Label, Markdown, Static

from xitui.core.safe_text import StreamFilter, safe, safe_line
from xitui.core.saved_chats import ChatMessage, SavedImage
from xitui.terminal.markdown import answer_parser
from xitui.terminal.pacing import FramePacer
from xitui.tui.widgets.pictures import picture

HELP = ("Pick a model (or press c on its row) and write below. Enter sends · Alt+Enter or Ctrl+N adds a "
        "line · ↑/↓ recall earlier inputs · /image PATH (Tab completes it) sends a picture with the next message "
        "to a vision model · Esc stops an answer · Ctrl+O copies the last answer · Ctrl+L starts a "
        "new conversation. Conversations are saved: the second picker resumes one (`xitui chats` lists them). "
        "Generate-only models continue your text; embedding models compare two texts; rerank models rank passages.")


class Transcript(VerticalScroll):
    """Questions and answers, one after the other; the answer being written streams into the last one."""

    DEFAULT_CSS = """
    Transcript .picture { width: auto; height: 10; margin: 0 0 0 2; }  /* pictures.ROWS */
    Transcript .picture-name { color: $text-muted; margin: 0 0 0 2; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: The figures line under the answer being (or last) written.
        self.figures: Label | None = None
        self._answer: Markdown | None = None
        #: A thinking model's reasoning for the answer being written (dim, folded once the answer ends).
        self.thought: Collapsible | None = None
        self._thought_text = ""
        #: Pieces of the answer and of its reasoning not drawn yet: appended by the stream's thread, taken by
        #: the frames (a deque's append and popleft are atomic, and these two are never replaced).
        self._pieces: deque[str] = deque()
        self._thoughts: deque[str] = deque()
        #: The answer's and the reasoning's pieces are made safe as they come (a sequence may be split
        #: between two pieces); only the stream's thread feeds these, `question` renews them before it starts.
        self._safe_answer = StreamFilter()
        self._safe_thought = StreamFilter()
        self._pacer = FramePacer()
        self._timer: Timer | None = None
        #: Frames drawn for the answer being (or last) written.
        self.frames = 0

    def compose(self) -> Any:
        yield Static(HELP, id="chat-help")

    async def _drop_help(self) -> None:
        for hint in self.query("#chat-help"):
            await hint.remove()

    async def question(self, text: str, images: list[SavedImage] | None = None) -> None:
        """A question (its images under it), and the empty answer under it that `add` fills."""
        await self._drop_help()
        answer = Markdown("", classes="answer", parser_factory=answer_parser)
        self.figures = Label("…", classes="stats", markup=False)
        self._answer, self.thought, self._thought_text = answer, None, ""
        self._pieces.clear()
        self._thoughts.clear()
        self._safe_answer, self._safe_thought = StreamFilter(), StreamFilter()
        self.frames = 0
        await self.mount(Static(safe(text), classes="user", markup=False),
                         *(picture(image) for image in images or ()), answer, self.figures)
        self.scroll_end(animate=False)
        self._pacer = FramePacer()
        self._arm(self._pacer.shortest)

    def add(self, piece: str) -> None:
        """A piece of the answer; drawn at the next frame. Safe from any thread (one at a time)."""
        piece = self._safe_answer.feed(piece)
        if piece:
            self._pieces.append(piece)

    def add_thought(self, piece: str) -> None:
        """A piece of the model's reasoning; drawn dim above the answer, in a fold of its own, at the next frame."""
        piece = self._safe_thought.feed(piece)
        if piece:
            self._thoughts.append(piece)

    def _arm(self, delay: float) -> None:
        self._timer = self.set_timer(delay, self._frame)

    async def _frame(self) -> None:
        self._timer = None
        await self._draw()
        self._arm(self._pacer.drawn())

    async def _draw(self) -> None:
        """Put what came since the last frame on screen."""
        thoughts, pieces = _take(self._thoughts), _take(self._pieces)
        if not thoughts and not pieces:
            return
        following = self.max_scroll_y - self.scroll_y <= 2
        if thoughts:
            self._thought_text += "".join(thoughts)
            if self.thought is None:
                self.thought = Collapsible(Static(self._thought_text, classes="reasoning", markup=False),
                                           title="reasoning", collapsed=False)
                await self.mount(self.thought, before=self._answer)
            else:
                self.thought.query_one(".reasoning", Static).update(self._thought_text)
        if pieces and self._answer is not None:
            await self._answer.append("".join(pieces))
        self.frames += 1
        if following:
            self.scroll_end(animate=False)

    async def end(self, figures: str) -> None:
        """The answer ended: the rest of it drawn, its figures (or why it stopped) under it; its reasoning
        folds away."""
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        await self._draw()
        if self.thought is not None:
            self.thought.collapsed = True
        if self.figures is not None:
            self.figures.update(safe_line(figures))  # it may end with the server's error
        self.scroll_end(animate=False)

    async def show(self, messages: list[ChatMessage]) -> None:
        """A saved conversation, as it was."""
        await self.clear()
        for message in messages:
            if message.role == "user":
                await self.mount(Static(safe(message.content), classes="user", markup=False),
                                 *(picture(image) for image in message.images))
            else:  # kept as the model wrote it, shown made safe
                await self.mount(Markdown(safe(message.content), classes="answer", parser_factory=answer_parser))
        self.scroll_end(animate=False)

    async def clear(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._pieces.clear()
        self._thoughts.clear()
        self.figures = None
        await self.remove_children()


def _take(pieces: deque[str]) -> list[str]:
    """Everything in `pieces` now, in order (what another thread appends meanwhile stays for the next frame)."""
    taken = []
    while pieces:
        taken.append(pieces.popleft())
    return taken
