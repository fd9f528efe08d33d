"""A line break the model writes stays a line break on a terminal (CommonMark would join the lines)."""

from __future__ import annotations

from rich.console import Console

from xitui.terminal.markdown import AnswerMarkdown

POEM = "In the gentle foam,\nA sip of light,\nA moment of bliss.\n\n```python\nx = 1\ny = 2\n```\n\n1. one\n   more\n2. two\n"


def lines(markup: str) -> list[str]:
    console = Console(width=60, record=True, color_system=None)
    with console.capture() as captured:
        console.print(AnswerMarkdown(markup))
    return [line.rstrip() for line in captured.get().splitlines() if line.strip()]


def test_each_line_of_a_paragraph_stays_a_line_and_code_is_untouched() -> None:
    shown = lines(POEM)
    assert shown[:3] == ["In the gentle foam,", "A sip of light,", "A moment of bliss."]
    assert [line.strip() for line in shown[3:5]] == ["x = 1", "y = 2"]
    assert [line.strip() for line in shown[5:]] == ["1 one", "more", "2 two"]


def test_a_long_line_still_wraps_to_the_width() -> None:
    shown = lines("word " * 30)
    assert len(shown) == 3 and all(len(line) <= 60 for line in shown)
