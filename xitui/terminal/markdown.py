"""Answers as Markdown where a line break the model writes stays a line break.

CommonMark joins the lines of a paragraph into one, so a poem, an address or a list written without markers
would run together on screen; chat front ends (ChatGPT's, Open WebUI, LM Studio) show those breaks, and so
do both of ours: the terminal view (rich) and the dashboard's transcript (Textual). markdown-it's `breaks`
option changes only its HTML renderer, not the tokens rich and Textual draw from, so the tokens are changed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.markdown import Markdown

if TYPE_CHECKING:
    from markdown_it import MarkdownIt
    from markdown_it.rules_core import StateCore
    from markdown_it.token import Token


def keep_line_breaks(tokens: list[Token]) -> None:
    """Turn every soft line break of `tokens` (a parse) into a hard one. Code blocks hold no break tokens."""
    for token in tokens:
        for child in token.children or ():
            if child.type == "softbreak":
                child.type = "hardbreak"


def _rule(state: StateCore) -> None:
    keep_line_breaks(state.tokens)


def answer_parser() -> MarkdownIt:
    """The parser the dashboard's transcript draws answers with: Textual's own ("gfm-like"), breaks kept."""
    from markdown_it import MarkdownIt

    parser = MarkdownIt("gfm-like")
    parser.core.ruler.push("keep_line_breaks", _rule)
    return parser


class AnswerMarkdown(Markdown):
    """rich's Markdown, breaks kept (rich builds its parser inside __init__: the parse is changed after it)."""

    def __init__(self, markup: str, **options: Any) -> None:
        super().__init__(markup, **options)
        keep_line_breaks(self.parsed)
