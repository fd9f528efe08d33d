"""Terminal output: rich on a terminal, plain text when piped or with NO_COLOR; one-line errors on stderr."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any


def plain(stream: Any = None) -> bool:
    """Plain text for `stream` (stdout by default): it is not a terminal, or NO_COLOR is set."""
    return bool(os.environ.get("NO_COLOR")) or not (stream or sys.stdout).isatty()


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


def error(message: str) -> None:
    """One line on stderr."""
    text = " ".join(str(message).split("\n")) if "\n" in str(message) else str(message)
    sys.stderr.write(f"error: {text}\n")


def info(message: str) -> None:
    sys.stderr.write(f"{message}\n")


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """A rich table on a terminal; tab-separated lines with a header when plain."""
    if plain():
        sys.stdout.write("\t".join(columns) + "\n")
        for row in rows:
            sys.stdout.write("\t".join("" if v is None else str(v) for v in row) + "\n")
        return
    from rich.table import Table

    tbl = Table(title=title, header_style="bold")
    for col in columns:
        tbl.add_column(col)
    for row in rows:
        tbl.add_row(*("" if v is None else str(v) for v in row))
    console().print(tbl)


@contextlib.contextmanager
def launch_progress(title: str, to: Any = None) -> Iterator[Callable[[float, str], None] | None]:
    """A progress bar while a launch runs, on the rich console `to` (default: stderr, and nothing when
    stderr is not a terminal); yields the callback `launch_and_wait` reports to. The CLI and the wizard."""
    if to is None:
        if plain(sys.stderr):
            yield None
            return
        to = console(stderr=True)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[stage]}"),
                        TimeElapsedColumn(), console=to, transient=True)
    task = progress.add_task(title, total=1.0, stage="")
    with progress:
        yield lambda done, stage: progress.update(task, completed=done, stage=stage)
