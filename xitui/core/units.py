"""Sizes written for people: one function for the CLI's tables and the dashboard's cells."""

from __future__ import annotations

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
