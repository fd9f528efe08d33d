"""Sizes and durations written for people (the CLI's tables, the dashboard's cells), and durations read."""

from __future__ import annotations

import re
from typing import Any


def human_bytes(value: Any, missing: str = "-") -> str:
    """`412 MiB`, `8.0 GiB`, `512 B`; `missing` when there is no number."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return missing
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" or size >= 100 else f"{size:.1f} {unit}"
        size /= 1024
    return missing


_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


#: Longest duration kept: anything longer (ten years) means never.
MAX_DURATION = 10 * 365 * 24 * 3600


def parse_duration(value: Any) -> float | None:
    """A time to live as users write it, in seconds; None for "never".

    Numbers are seconds; strings are `90`, `30s`, `10m`, `1h30m`, `2d` (Ollama's keep_alive form);
    a negative value means never, `0` means as soon as the model is idle. Raises ValueError otherwise."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:
            raise ValueError(f"{value!r} is not a duration") from None
    else:
        text = str(value).strip().lower().replace(" ", "")
        if text in ("never", "forever", "none", "inf"):
            return None
        try:
            seconds = float(text)
        except ValueError:
            sign = -1 if text.startswith("-") else 1
            body = text.lstrip("+-")
            parts = _PART.findall(body)
            if not body or "".join(a + u for a, u in parts) != body:
                raise ValueError(f"{value!r} is not a duration (write 30s, 10m, 1h, or -1 for never)") from None
            seconds = sign * sum(float(amount) * _UNITS[unit] for amount, unit in parts)
    if seconds != seconds or seconds in (float("inf"), float("-inf")):
        raise ValueError(f"{value!r} is not a duration")
    return None if seconds < 0 or seconds > MAX_DURATION else seconds


def human_duration(seconds: float | None, never: str = "never") -> str:
    """`45s`, `12m`, `1h05m`, `3d4h`: short enough for a table cell."""
    if seconds is None:
        return never
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m" + (f"{seconds % 60:02d}s" if seconds < 600 and seconds % 60 else "")
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600}h"


def idle_text(idle_since: float | None, unload_at: float | None, now: float, busy: bool = False) -> str:
    """`4m, unloads in 6m` / `busy` / `-`: how long a model has been idle, and when its ttl unloads it."""
    if idle_since is None:
        return "busy" if busy else "-"
    text = human_duration(now - idle_since)
    if unload_at is not None:
        text += f", unloads in {human_duration(unload_at - now)}"
    return text


def launch_text(seconds: float | None, stages: dict[str, float] | None = None, start: str | None = None,
                detail: bool = True) -> str:
    """`0.7 s` / `0.7 s (warm start): process 0.02, weights 0.62`: how long a launch took and where the time
    went. Stages under 10 ms are left out (a warm start's import, for one); `detail=False` keeps it to the
    total and how it started."""
    if seconds is None:
        return "-"
    text = f"{seconds:.1f} s" + (f" ({start} start)" if start else "")
    shown = [f"{name} {value:.2f}" for name, value in (stages or {}).items() if value >= 0.01]
    if detail and shown:
        text += ": " + ", ".join(shown)
    return text
