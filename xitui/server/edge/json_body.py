"""Reading a large request body's JSON without holding up the event loop, and within a budget of values.

orjson parses in one C call that holds Python's lock while it builds the objects: in a thread it still
stops the event loop, and a 60 MiB body of small objects stopped it for half a second (every route and
stream of the server waited). Small bodies of little structure are still parsed by orjson. Others are read
here, one value at a time, in a thread: the lock passes back to the event loop every few milliseconds,
strings are read by the standard library's C scanner, no recursion (the nesting is an explicit stack,
capped), and a body of more values than any request carries is refused before it is built whole. Results
are what orjson gives: same numbers, same refusals (NaN, lone surrogates, control characters in strings,
leading zeros, trailing data).
"""

from __future__ import annotations

import re
from json.decoder import scanstring  # type: ignore[attr-defined]  # the C scanner (typeshed leaves it out)
from typing import Any

import orjson

from xitui.core.errors import XituiError

#: Values a request body may hold: chat bodies of thousands of messages and 256 KiB of tool schemas hold a
#: few tens of thousands.
MAX_VALUES = 250_000
#: Nesting a body may have (orjson's own limit; what is handed on is held to core.input_size.MAX_DEPTH).
MAX_NESTING = 1024
#: Bodies up to ORJSON_ANY bytes, or up to ORJSON_BYTES with fewer commas and opening brackets than
#: ORJSON_VALUES, go to orjson: its worst case (small objects) holds the lock for a few milliseconds. (A
#: 60 MiB body of long strings held it 0.1 s; read here, the longest hold is one string's scan.)
ORJSON_ANY = 64 * 1024
ORJSON_BYTES = 1024 * 1024
ORJSON_VALUES = 20_000


class BodyTooLarge(XituiError):
    """The body holds more than a request carries."""

    status_code = 413


class TooDeep(XituiError):
    """The JSON is nested deeper than its reader allows."""


def loads(raw: bytes) -> Any:
    """The body's JSON; XituiError (one line) for what is not JSON, BodyTooLarge past MAX_VALUES."""
    if len(raw) <= ORJSON_ANY or (len(raw) <= ORJSON_BYTES
                                  and raw.count(b",") + raw.count(b"[") + raw.count(b"{") < ORJSON_VALUES):
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # read again below, for a line that says where and what (a small body: cheap)
    return read_values(raw)


def read_values(raw: bytes) -> Any:
    """The body's JSON read value by value (what `loads` does with a body of much structure)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise XituiError("request body is not valid JSON (not UTF-8)") from None
    return _Parser(text).value()


def nested_deeper_than(text: str, levels: int) -> bool:
    """Whether JSON text (valid or not: read up to where it stops being JSON, as a JSON parser would) opens
    more than `levels` lists and objects inside one another; read without recursion."""
    try:
        _Parser(text, nesting=levels, budget=len(text) + 1).value()
    except TooDeep:
        return True
    except XituiError:
        pass
    return False


_SPACE = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_LITERALS: dict[str, tuple[str, Any]] = {"t": ("true", True), "f": ("false", False), "n": ("null", None)}


class _Parser:
    def __init__(self, text: str, nesting: int = MAX_NESTING, budget: int = MAX_VALUES):
        self.text = text
        self.nesting = nesting
        self.budget = budget
        self.count = 0
        #: The containers being filled, each with the key its next value goes under (None for a list).
        self.stack: list[tuple[Any, str | None]] = []
        #: Only escapes can make a lone surrogate (UTF-8 input cannot hold one): strings are checked then.
        self.escapes = _SURROGATE_ESCAPE.search(text) is not None

    def fail(self, pos: int, what: str = "") -> XituiError:
        where = ".".join(str(len(c)) if k is None else k if k.isidentifier() else repr(k)[:40]
                         for c, k in self.stack)[:200]
        return XituiError(f"{where or 'request body'}: not valid JSON{', ' + what if what else ''} "
                          f"(at character {pos})")

    def space(self, pos: int) -> int:
        return _SPACE.match(self.text, pos).end()  # type: ignore[union-attr]

    def string(self, pos: int) -> tuple[str, int]:
        """The string whose opening quote is at `pos`, and the position after its closing quote."""
        try:
            value, end = scanstring(self.text, pos + 1, True)
        except ValueError:
            raise self.fail(pos, "a malformed string") from None
        if self.escapes:
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                raise self.fail(pos, "a lone surrogate") from None
        return value, end

    def key(self, pos: int) -> tuple[str, int]:
        """An object's key and the colon after it; the position of its value."""
        if self.text[pos:pos + 1] != '"':
            raise self.fail(pos, "expected a key")
        key, pos = self.string(pos)
        pos = self.space(pos)
        if self.text[pos:pos + 1] != ":":
            raise self.fail(pos, "expected ':'")
        return key, self.space(pos + 1)

    def scalar(self, pos: int) -> tuple[Any, int]:
        text = self.text
        char = text[pos:pos + 1]
        if char == '"':
            return self.string(pos)
        literal = _LITERALS.get(char)
        if literal is not None:
            word, value = literal
            if text.startswith(word, pos):
                return value, pos + len(word)
            raise self.fail(pos)
        match = _NUMBER.match(text, pos)
        if match is None or match.end() == pos:
            raise self.fail(pos)
        number = match.group()
        if match.group(1) is None and match.group(2) is None and len(number) < 21:
            whole = int(number)
            if -(2**63) <= whole < 2**64:
                return whole, match.end()
        value = float(number)
        if value in (float("inf"), float("-inf")):
            raise self.fail(pos, "a number out of range")
        return value, match.end()

    def value(self) -> Any:
        text = self.text
        end = len(text)
        pos = self.space(0)
        stack = self.stack
        while True:
            self.count += 1
            if self.count > self.budget:
                raise BodyTooLarge(f"request body holds more than {self.budget} JSON values; a request carries "
                                   "far fewer")
            char = text[pos:pos + 1]
            if char in ("{", "["):
                if len(stack) >= self.nesting:
                    raise TooDeep(f"request body is nested deeper than {self.nesting} levels")
                closing = "}" if char == "{" else "]"
                pos = self.space(pos + 1)
                if text[pos:pos + 1] == closing:
                    value: Any = {} if char == "{" else []
                    pos += 1
                elif char == "{":
                    key, pos = self.key(pos)
                    stack.append(({}, key))
                    continue
                else:
                    stack.append(([], None))
                    continue
            else:
                value, pos = self.scalar(pos)
            # the value is whole: put it in its container, closing every container that ends after it
            while True:
                if not stack:
                    if self.space(pos) != end:
                        raise self.fail(pos, "data after the value")
                    return value
                container, into = stack[-1]
                if into is None:
                    container.append(value)
                else:
                    container[into] = value
                pos = self.space(pos)
                char = text[pos:pos + 1]
                if char == ",":
                    pos = self.space(pos + 1)
                    if into is not None:
                        into, pos = self.key(pos)
                        stack[-1] = (container, into)
                    break
                if char != ("]" if into is None else "}"):
                    raise self.fail(pos, "expected ',' or a closing bracket")
                stack.pop()
                value = container
                pos += 1
