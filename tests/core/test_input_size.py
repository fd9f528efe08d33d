"""The one size rule and the depth check (core/chat_format/input_size.py)."""

from __future__ import annotations

import pytest

from xitui.core.chat_format.input_size import CHARS_PER_TOKEN, MAX_DEPTH, InputCount, check_depth, cut, depth
from xitui.core.errors import XituiError


def nested(levels: int, kind: str = "list") -> object:
    value: object = 1
    for _ in range(levels):
        value = [value] if kind == "list" else {"a": value}
    return value


def test_depth_is_counted_without_recursion() -> None:
    assert depth(1) == 0 and depth([]) == 1 and depth({"a": [1, {"b": []}]}) == 4
    assert depth(nested(MAX_DEPTH)) == MAX_DEPTH
    assert depth(nested(100_000)) == MAX_DEPTH + 1  # no RecursionError, and it stops counting early
    assert depth([1, [2], {"x": nested(70, "dict")}]) == MAX_DEPTH + 1
    check_depth(nested(MAX_DEPTH, "dict"), "tools[0].function.parameters")
    with pytest.raises(XituiError) as caught:
        check_depth({"x": nested(100_000, "dict")}, "chat_template_kwargs")
    assert str(caught.value) == f"chat_template_kwargs: nested deeper than {MAX_DEPTH} levels"


def test_input_is_counted_by_part_and_refused_in_one_line() -> None:
    count = InputCount()
    count.add("messages", 10)
    count.add("tools", 8 * 1024 * 1024)
    count.add("chat_template_kwargs", 0)
    with pytest.raises(XituiError) as caught:
        count.check(2048, "request")
    assert str(caught.value) == ("request: 8388618 characters (messages 10, tools 8388608) cannot fit the model's "
                                 f"context of 2048 tokens (at most {2048 * CHARS_PER_TOKEN} characters are read)")
    small = InputCount()
    small.add("prompt", 2048 * CHARS_PER_TOKEN)
    small.check(2048, "prompt")


def test_texts_are_cut_to_what_a_model_can_read() -> None:
    assert cut("abc", 96) == "abc"
    assert cut("x" * 10**6, 96) == "x" * (96 * CHARS_PER_TOKEN)
