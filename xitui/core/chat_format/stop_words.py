"""Text that arrives in pieces (a streamed answer): how much of what has come may be the start of a marker
(a stop word, a reasoning tag, a tool call's opening) and must wait for the next piece to tell."""

from __future__ import annotations


def partial_marker(text: str, marker: str) -> int:
    """How many characters at the end of `text` could begin `marker` (0: none; the whole marker is not
    counted, finding it is the caller's)."""
    for k in range(min(len(marker) - 1, len(text)), 0, -1):
        if text.endswith(marker[:k]):
            return k
    return 0
