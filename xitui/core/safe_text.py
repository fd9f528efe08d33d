"""Text from a server or a model made safe to show on a terminal.

A model name, an error's detail or a model's answer may hold escape sequences (a model can be steered by
text injected into its prompt): a window title (OSC 0/2), a clipboard write (OSC 52), a screen clear (CSI
2J), a bracketed-paste end that lets a later paste run as typed keys. `safe` drops them whole (the
introducer and what it carries, so no `]0;title` stays behind), every other C0 and C1 control but `\\n` and
`\\t` (a `\\r` could overwrite a line, so `\\r\\n` becomes `\\n`), DEL, and the bidi overrides and isolates
that make text read differently from what it is. `StreamFilter` does the same for text that comes in
pieces, where a sequence may be split between two of them.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: A control string's body: printable characters (a control character ends it, as it does on a terminal).
_BODY = r"[^\x00-\x1f\x7f-\x9f]*"
#: A control string's end: BEL or ST (ESC \\ or C1 ST); missing when cut off.
_END = r"(?:\x07|\x1b\\|\x9c)?"
#: Everything `safe` drops, as one pattern. It starts with one character class (what may begin anything
#: dropped), so the regex engine skips ordinary text in a fast loop (1 MB in ~3 ms, a tenth of the time the
#: same alternatives written first take); what follows the character depends on which it was:
_UNSAFE = re.compile(
    # C0 but \t \n (\r too: it could overwrite a line), DEL, C1, bidi embeddings, overrides and isolates
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]"
    # ESC: OSC, DCS, SOS, PM, APC up to BEL or ST (cut off: to the first control character or the end); CSI
    # with its parameters, intermediates and final byte; any other escape with its intermediates and final byte
    # (ESC c resets the terminal, ESC ( 0 switches the character set)
    rf"(?:(?<=\x1b)(?:[\]PX^_]{_BODY}{_END}|\[[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?|[\x20-\x2f]*[\x30-\x7e]?)"
    # the same control strings and CSI introduced by their C1 forms
    rf"|(?<=[\x90\x98\x9d\x9e\x9f]){_BODY}{_END}"
    r"|(?<=\x9b)[\x30-\x3f]*[\x20-\x2f]*[\x40-\x7e]?)?"
)
#: A sequence at the very end of a piece that the next piece may finish (or whose ST may follow).
_OPEN_TAIL = re.compile(
    r"[\x1b\x90\x98\x9b\x9d\x9e\x9f]"
    rf"(?:(?<=\x1b)(?:[\]PX^_]{_BODY}\x1b?|\[[\x30-\x3f]*[\x20-\x2f]*|[\x20-\x2f]*)"
    rf"|(?<=[\x90\x98\x9d\x9e\x9f]){_BODY}\x1b?"
    r"|(?<=\x9b)[\x30-\x3f]*[\x20-\x2f]*)\Z"
)
#: Characters `safe_json` writes as \\u escapes (json.dumps already escapes C0 ones).
_JSON_UNSAFE = re.compile(r"[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
#: What a held, unfinished sequence may grow to before its body is dropped (only its introducer is kept).
MAX_HELD = 1024


def safe(text: str) -> str:
    """`text` without escape sequences, control characters (but newline and tab) or bidi overrides."""
    return _UNSAFE.sub("", text)


def safe_line(text: Any) -> str:
    """`safe(str(text))` on one line: newlines and tabs become spaces (a table cell, an error line)."""
    text = _UNSAFE.sub("", str(text))
    if "\n" in text or "\t" in text:
        text = text.replace("\n", " ").replace("\t", " ")
    return text


def safe_json(data: Any, indent: int | None = 2) -> str:
    """`data` as JSON (non-ASCII kept), made safe by `safe_json_text`."""
    return safe_json_text(json.dumps(data, indent=indent, ensure_ascii=False))


def safe_json_text(text: str) -> str:
    """JSON text with DEL, C1 controls, line separators and bidi overrides written as \\u escapes (json.dumps
    escapes C0 ones; outside strings JSON is ASCII): the same data for a program, nothing a terminal acts on."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


class StreamFilter:
    """`safe` for text that comes in pieces: `feed` each piece, print what it returns. A sequence cut at a
    piece's end is held back until the next piece finishes it, so nothing of it shows at the boundary."""

    def __init__(self) -> None:
        self._held = ""

    def feed(self, piece: str) -> str:
        text = self._held + piece if self._held else piece
        tail = _OPEN_TAIL.search(text)
        if tail is None:
            self._held = ""
            return _UNSAFE.sub("", text)
        start = tail.start()
        held = text[start:]
        if len(held) > MAX_HELD:  # a sequence that long is not shown anyway: keep its introducer, drop the rest
            intro = 2 if held[0] == "\x1b" and len(held) > 1 else 1
            held = held[:intro] + ("\x1b" if held.endswith("\x1b") and len(held) > intro else "")
        self._held = held
        return _UNSAFE.sub("", text[:start])

    def flush(self) -> str:
        """The stream ended: what is still held is an unfinished sequence, dropped (returns "")."""
        held, self._held = self._held, ""
        return _UNSAFE.sub("", held)

