"""Terminal output: rich on a terminal, plain text when piped or with NO_COLOR; one-line errors on stderr.

What these write may come from a server or a model (names, errors, answers): it goes through
core/safe_text.py first, and rich is never handed it as markup.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from xitui.core.safe_text import safe, safe_json, safe_line


def plain(stream: Any = None) -> bool:
    """Plain text for `stream` (stdout by default): it is not a terminal, or NO_COLOR is set."""
    return bool(os.environ.get("NO_COLOR")) or not (stream or sys.stdout).isatty()


def console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, no_color=bool(os.environ.get("NO_COLOR")), highlight=False)


def error(message: str) -> None:
    """One line on stderr (it may quote a server's detail: made safe)."""
    sys.stderr.write(f"error: {safe_line(message)}\n")


def warning(message: str) -> None:
    """One line on stderr: legal, but likely not what was meant."""
    sys.stderr.write(f"warning: {safe_line(message)}\n")


def info(message: str) -> None:
    sys.stderr.write(f"{safe(str(message))}\n")


def print_json(data: Any) -> None:
    """JSON on stdout, the same data with nothing a terminal acts on (core/safe_text.safe_json)."""
    sys.stdout.write(safe_json(data) + "\n")


def table(columns: list[str], rows: list[list[Any]], title: str | None = None) -> None:
    """A rich table on a terminal; tab-separated lines with a header when plain. Each cell is one line of
    safe text, and rich reads it as text, never as markup (a model named `[bold]x[/` is just that)."""
    cells = [["" if v is None else safe_line(v) for v in row] for row in rows]
    if plain():
        sys.stdout.write("\t".join(columns) + "\n")
        for row in cells:
            sys.stdout.write("\t".join(row) + "\n")
        return
    from rich.table import Table
    from rich.text import Text

    tbl = Table(title=Text(safe_line(title), style="table.title") if title else None, header_style="bold")
    for col in columns:
        tbl.add_column(col)
    for row in cells:
        tbl.add_row(*(Text(v) for v in row))
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

    # the stage is the server's word: made safe, and drawn as text, not markup
    progress = Progress(TextColumn("{task.description}", markup=False), BarColumn(),
                        TextColumn("{task.fields[stage]}", markup=False), TimeElapsedColumn(), console=to,
                        transient=True)
    task = progress.add_task(safe_line(title), total=1.0, stage="")
    with progress:
        yield lambda done, stage: progress.update(task, completed=done, stage=safe_line(stage or ""))
