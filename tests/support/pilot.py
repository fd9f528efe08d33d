"""Waiting inside a Pilot test for what the dashboard (or the server behind it) comes to show."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


async def until(pilot: Any, check: Callable[[], Any], seconds: float = 30, what: str = "") -> Any:
    """Let the app handle its messages until `check()` holds, and give what it gave; fail naming `what` after
    `seconds` (a live stream, a server's reply or a refresh lands when it lands: there is no message to await)."""
    deadline = time.monotonic() + seconds
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await pilot.pause(0.05)
    return value
