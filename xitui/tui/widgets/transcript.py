"""The conversation as it reads on screen: questions, answers streamed in as Markdown, the figures under
each answer. It follows the bottom while the user is there, and leaves them be when they scroll up."""

from __future__ import annotations

from typing import Any

from textual.containers import VerticalScroll
from textual.widgets import Collapsible, Label, Markdown, Static

from xitui.core.chats import ChatMessage

HELP = ("Pick a running model (or press c on its row) and write below. Enter sends · Alt+Enter or Ctrl+N adds a "
        "line · ↑/↓ recall earlier inputs · Esc stops an answer · Ctrl+O copies the last answer · Ctrl+L starts a "
        "new conversation. Conversations are saved: the second picker resumes one (`xitui chats` lists them). "
        "Generate-only models continue your text; embedding models compare two texts; rerank models rank passages.")


class Transcript(VerticalScroll):
    """Questions and answers, one after the other; the answer being written streams into the last one."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stream: Any = None
        #: The figures line under the answer being (or last) written.
        self.figures: Label | None = None
        self._answer: Markdown | None = None
        #: A thinking model's reasoning for the answer being written (dim, folded once the answer ends).
        self.thought: Collapsible | None = None
        self._thought_text = ""

    def compose(self) -> Any:
        yield Static(HELP, id="chat-help")

    async def _drop_help(self) -> None:
        for hint in self.query("#chat-help"):
            await hint.remove()

    async def question(self, text: str) -> None:
        """A question, and the empty answer under it that `write` fills."""
        await self._drop_help()
        answer = Markdown("", classes="answer")
        self.figures = Label("…", classes="stats")
        self._answer, self.thought, self._thought_text = answer, None, ""
        await self.mount(Static(text, classes="user", markup=False), answer, self.figures)
        self.scroll_end(animate=False)
        # Markdown's stream coalesces pieces that arrive faster than it can draw them
        self._stream = Markdown.get_stream(answer)

    async def write(self, piece: str) -> None:
        following = self.max_scroll_y - self.scroll_y <= 2
        await self._stream.write(piece)
        if following:
            self.scroll_end(animate=False)

    async def think(self, piece: str) -> None:
        """A piece of the model's reasoning: shown dim above the answer, in a fold of its own."""
        following = self.max_scroll_y - self.scroll_y <= 2
        self._thought_text += piece
        if self.thought is None:
            self.thought = Collapsible(Static(self._thought_text, classes="reasoning", markup=False),
                                       title="reasoning", collapsed=False)
            await self.mount(self.thought, before=self._answer)
        else:
            self.thought.query_one(".reasoning", Static).update(self._thought_text)
        if following:
            self.scroll_end(animate=False)

    async def end(self, figures: str) -> None:
        """The answer ended: its figures (or why it stopped) go under it; its reasoning folds away."""
        if self.thought is not None:
            self.thought.collapsed = True
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        if self.figures is not None:
            self.figures.update(figures)
        self.scroll_end(animate=False)

    async def show(self, messages: list[ChatMessage]) -> None:
        """A saved conversation, as it was."""
        await self.clear()
        for message in messages:
            if message.role == "user":
                await self.mount(Static(message.content, classes="user", markup=False))
            else:
                await self.mount(Markdown(message.content, classes="answer"))
        self.scroll_end(animate=False)

    async def clear(self) -> None:
        if self._stream is not None:
            await self._stream.stop()
            self._stream = None
        self.figures = None
        await self.remove_children()
