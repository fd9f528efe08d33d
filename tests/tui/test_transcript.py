"""The transcript shows an answer's line breaks as the model wrote them, saved or streamed."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Markdown

from xitui.core.saved_chats import ChatMessage
from xitui.tui.widgets.transcript import Transcript

POEM = "In the gentle foam,\nA sip of light,\nA moment of bliss.\n\n```\nx = 1\ny = 2\n```\n"


class One(App[None]):
    def compose(self) -> ComposeResult:
        yield Transcript()


def shown(answer: Markdown) -> list[str]:
    """The answer's lines as drawn: each of its innermost widgets, top to bottom."""
    leaves = sorted((w for w in answer.query("*") if not w.children), key=lambda w: w.region.y)
    texts = (leaf.render_line(y).text.strip() for leaf in leaves for y in range(leaf.size.height))
    return [text for text in texts if text]


async def drawn(pilot: Any, app: App[None], lines: int) -> list[str]:
    """The last answer's lines once Markdown has drawn at least `lines` of them (it renders in steps)."""
    for _ in range(500):
        text = shown(app.query(".answer").last())
        if len(text) >= lines:
            return text
        await pilot.pause()
    raise AssertionError(f"the answer drew {text}")


def test_saved_and_streamed_answers_keep_their_lines() -> None:
    async def main() -> None:
        app = One()
        async with app.run_test(size=(60, 30)) as pilot:
            transcript = app.query_one(Transcript)
            await transcript.show([ChatMessage("user", "A haiku?"), ChatMessage("assistant", POEM)])
            saved = await drawn(pilot, app, 5)
            assert saved[:3] == ["In the gentle foam,", "A sip of light,", "A moment of bliss."]
            assert "x = 1" in saved[3] and "y = 2" in saved[4]

            await transcript.question("Again?")
            for start in range(0, len(POEM), 3):  # pieces that cut lines and words, as a stream does
                transcript.add(POEM[start:start + 3])
            await transcript.end("done")
            assert (await drawn(pilot, app, 5))[:3] == ["In the gentle foam,", "A sip of light,",
                                                              "A moment of bliss."]

    asyncio.run(main())
