"""A real terminal for the tests that look at a screen as a person does: tmux, read back with capture-pane."""

from __future__ import annotations

import subprocess
import time


def screen(session: str) -> str:
    return subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True).stdout


def alive(session: str) -> bool:
    return subprocess.run(["tmux", "has-session", "-t", session], capture_output=True).returncode == 0


def wait_for(session: str, text: str, seconds: float = 30) -> str:
    """The screen once `text` shows on it; fails with the screen as it was when time ran out (or the program
    in the session ended)."""
    deadline = time.monotonic() + seconds
    shown = ""
    while time.monotonic() < deadline:
        shown = screen(session)
        if text in shown:
            return shown
        if not alive(session):
            break
        time.sleep(0.2)
    raise AssertionError(f"{text!r} never showed; the screen was:\n{shown}")


def wait_gone(session: str, seconds: float = 10) -> bool:
    """Whether the session ended (its program quit) within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and alive(session):
        time.sleep(0.2)
    return not alive(session)
