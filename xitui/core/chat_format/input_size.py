"""One size rule for everything that becomes model input, and the nesting any value handed on may have.

A model reads at most its context (or, for embedding and rerank models, `max_tokens`) in tokens; a token
stands for at most CHARS_PER_TOKEN characters, so more characters than `tokens * CHARS_PER_TOKEN` cannot
all be read. Text past that is refused (generation: everything the prompt is built from, counted together)
or cut before any tokenizer sees it (rerank and embedding inputs, which the model truncates anyway).
Tokenizing the whole of a text the model then truncates cost seconds on the engine thread and, for rerank
pairs, memory that grows with the product of the two texts' lengths.

Nesting is checked without recursion, before anything serializes or walks a value: a JSON value thousands of
levels deep made json.dumps raise RecursionError and orjson refuse it (a 500, not the client's 400).
"""

from __future__ import annotations

from typing import Any

from xitui.core.errors import XituiError

#: Characters a token may stand for, at most (English averages about 4; runs of spaces in code, up to a few
#: dozen in some vocabularies; a word longer than WordPiece's 100 characters is one unknown token, a text
#: made of those is read a little shorter than the model alone would read it).
CHARS_PER_TOKEN = 16
#: Levels of nesting any JSON value a request hands on (a tool's parameters, a call's arguments, a schema,
#: template variables) may have: far past what applications send, far short of any serializer's limit.
MAX_DEPTH = 64


def readable_chars(tokens: int) -> int:
    """The most characters a model reading `tokens` tokens can read."""
    return max(1, tokens) * CHARS_PER_TOKEN


def cut(text: str, tokens: int) -> str:
    """`text` without what a model reading `tokens` tokens can never reach."""
    limit = readable_chars(tokens)
    return text if len(text) <= limit else text[:limit]


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """Levels of lists and objects in `value` (a scalar: 0), counted without recursion; stops counting once
    past `limit` (returns limit + 1)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, (list, tuple)):
            children = node
        else:
            continue
        if level > limit:
            return limit + 1
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list, tuple)))
    return deepest


def check_depth(value: Any, where: str, limit: int = MAX_DEPTH) -> None:
    """Refuse (one line, a 400) a value nested deeper than `limit` levels."""
    if depth(value, limit) > limit:
        raise XituiError(f"{where}: nested deeper than {limit} levels")


class InputCount:
    """The characters a request hands its model, by part (what the refusal names), against the model's
    context."""

    def __init__(self) -> None:
        self.parts: dict[str, int] = {}

    def add(self, part: str, chars: int) -> None:
        self.parts[part] = self.parts.get(part, 0) + chars

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def check(self, context: int, what: str) -> None:
        """Refuse, in one line with the limit and what was counted, input that cannot fit `context` tokens."""
        limit = readable_chars(context)
        total = self.total
        if total <= limit:
            return
        counted = [f"{part} {chars}" for part, chars in self.parts.items() if chars]
        shown = f" ({', '.join(counted)})" if len(counted) > 1 else ""
        raise XituiError(f"{what}: {total} characters{shown} cannot fit the model's context of {context} tokens "
                         f"(at most {limit} characters are read)")
