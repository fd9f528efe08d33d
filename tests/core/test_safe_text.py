"""core/safe_text.py: what a server or a model says, made safe for a terminal (issue 31)."""

from __future__ import annotations

import json
import random
import time

import pytest

from xitui.core.safe_text import MAX_HELD, StreamFilter, safe, safe_json, safe_line

#: Every class of sequence, as a hostile answer would carry it, and what must be left of it.
SEQUENCES = [
    ("window title, BEL", "a\x1b]0;pwned\x07 b", "a b"),
    ("window title, ST", "a\x1b]2;pwned\x1b\\b", "ab"),
    ("clipboard write (OSC 52)", "x\x1b]52;c;cm0gLXJmIH4K\x07y", "xy"),
    ("hyperlink (OSC 8)", "\x1b]8;;http://evil\x1b\\click\x1b]8;;\x1b\\", "click"),
    ("screen clear and home (CSI)", "\x1b[2J\x1b[Hhello", "hello"),
    ("colour and private modes", "\x1b[31;1mred\x1b[0m \x1b[?1049h\x1b[?25l", "red "),
    ("bracketed paste end", "text\x1b[201~rm -rf ~", "textrm -rf ~"),
    ("DCS", "a\x1bPq#0;2;0;0;0\x1b\\b", "ab"),
    ("APC, PM, SOS", "a\x1b_Gf=24\x1b\\b\x1b^pm\x07c\x1bXsos\x1b\\d", "abcd"),
    ("reset and charset", "\x1bc\x1b(0\x1b7\x1b=ok", "ok"),
    ("C1 CSI and OSC", "\x9b2J\x9d0;title\x9cok\x9b31mred", "okred"),
    ("C1 DCS, APC, lone C1", "\x90data\x9ca\x9fapc\x07b\x85\x84c", "abc"),
    ("unterminated OSC ends at the line", "one \x1b]0;title\ntwo", "one \ntwo"),
    ("unterminated CSI", "x\x1b[12;", "x"),
    ("lone ESC", "x\x1b", "x"),
    ("C0 controls, DEL", "a\x00b\x07c\x08d\x0be\x0cf\x7fg\x1ah", "abcdefgh"),
    ("carriage return", "line\r\nsafe\rspoofed", "line\nsafespoofed"),
    ("bidi overrides and isolates", "a\u202eb\u202dc\u2066d\u2069e\u202af", "abcdef"),
]


@pytest.mark.parametrize(("what", "text", "left"), SEQUENCES, ids=[s[0] for s in SEQUENCES])
def test_each_class_of_sequence_goes_whole(what: str, text: str, left: str) -> None:
    assert safe(text) == left


def test_ordinary_text_stays_as_it_is() -> None:
    text = ("Tabs\tand\nnewlines stay; ünïcödé, 中文, العربية, emoji 😀, the marks \u200e\u200f, "
            "[bold]markup[/] and [link=x] are text here, a backslash \\ and a bracket ] too.\n")
    assert safe(text) == text
    assert safe("") == ""


def test_one_line_for_cells_and_errors() -> None:
    assert safe_line("a\nb\tc\x1b]0;t\x07d") == "a b cd"
    assert safe_line(42) == "42"


def test_json_escapes_what_json_leaves_raw() -> None:
    data = {"name": "a\x9b2Jb\u202ec\x7f\u2028", "esc": "\x1b]0;t\x07", "text": "ünï 😀"}
    text = safe_json(data)
    assert json.loads(text) == data  # the same data
    assert safe(text) == text  # nothing a terminal acts on
    assert "ünï 😀" in text


def _pieces(text: str, rng: random.Random) -> list[str]:
    cuts = sorted(rng.sample(range(len(text) + 1), k=min(len(text) + 1, rng.randint(0, 6))))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


def test_a_sequence_split_between_pieces_leaks_nothing() -> None:
    stream = StreamFilter()
    assert [stream.feed(p) for p in ("hi \x1b", "]0;pwned", "\x07 there")] == ["hi ", "", " there"]
    stream = StreamFilter()
    shown = [stream.feed(p) for p in ("a\x1b]52;c;Zm9v\x1b", "\\b", "\x1b[", "2", "J", "c\x9b", "31m", "d")]
    assert "".join(shown) == "abcd"
    assert stream.flush() == ""
    stream = StreamFilter()
    assert stream.feed("cut off \x1b]0;ti") == "cut off "
    assert stream.flush() == ""


def test_pieces_give_what_the_whole_gives() -> None:
    """Any split of any mix of sequences: the pieces' output joined is `safe` of the whole."""
    alphabet = ["\x1b", "[", "]", "P", "_", "\\", "\x07", "\x9c", "\x9b", "\x9d", "\x90", "a", "0", ";", "m",
                "\n", "\t", "\r", "\x7f", "\u202e", "é", "(", " ", "2", "J", "😀"]
    rng = random.Random(31)
    for _ in range(20000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 16)))
        stream = StreamFilter()
        shown = "".join(stream.feed(p) for p in _pieces(text, rng)) + stream.flush()
        assert shown == safe(text), repr(text)


def test_a_long_unfinished_sequence_is_held_bounded() -> None:
    stream = StreamFilter()
    assert stream.feed("before \x1b]0;") == "before "
    for _ in range(100):
        assert stream.feed("x" * 1000) == ""
        assert len(stream._held) <= MAX_HELD + 1
    assert stream.feed("\x07after") == "after"


def test_fast_enough_for_streamed_pieces() -> None:
    """1 MB in well under the time a frame takes, 10k pieces in a few ms (measured on this 2-core machine:
    1 MB of ordinary text 2.2 ms, of dense escapes 32 ms, 10k pieces through the stream filter 3.6 ms, 4.5 ms
    with escapes split between them; the bounds leave room for a busy machine)."""
    text = ("An ordinary answer, ünïcödé 中文 😀, with [brackets] and\nlines.\t" * 20000)[:1_000_000]
    start = time.perf_counter()
    assert safe(text) == text
    whole = time.perf_counter() - start
    hostile = ("ab\x1b[31mcd\x07\x1b]0;t\x07" * 60000)[:1_000_000]
    start = time.perf_counter()
    assert "\x1b" not in safe(hostile)
    dense = time.perf_counter() - start
    pieces = ["word ", "pie", "ce\n", "\x1b", "]0;x\x07", "tok"] * 1700
    stream = StreamFilter()
    start = time.perf_counter()
    shown = "".join(stream.feed(p) for p in pieces)
    streamed = time.perf_counter() - start
    assert "\x1b" not in shown and "]0;x" not in shown
    assert whole < 0.05 and dense < 0.5 and streamed < 0.2, (whole, dense, streamed)
