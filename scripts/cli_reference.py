"""docs/cli.md: every xitui command's --help as Click prints it, then the settings `xitui config set` takes.

    scripts/cli-reference            # writes docs/cli.md
    scripts/cli-reference --check    # exit 1, saying so, when docs/cli.md is not what the code would write

The help text is the commands' own (Typer builds Click commands; Click formats them at a fixed width, so the
file does not depend on the terminal); the settings table is read from the settings' declarations in
xitui/core/config.py. tests/test_docs.py fails while the file is out of date.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import typer

from xitui.cli.main import app
from xitui.core.config import SETTINGS, env_name

ROOT = Path(__file__).resolve().parent.parent
TARGET = ROOT / "docs" / "cli.md"
WIDTH = 100

HEADER = """# CLI reference

Written by `scripts/cli-reference` from the commands' own `--help`; do not edit by hand (a test fails when
this file and the code disagree). Every command that talks to a server takes `-e/--endpoint` and
`--api-key`; errors are one line on stderr and exit code 1.
"""


def helps() -> Iterator[tuple[str, str]]:
    """(the command line, its help) for xitui and every command under it, in the order `--help` lists them."""
    yield from _walk(typer.main.get_command(app), ["xitui"], None)


def _walk(command: click.Command, path: list[str], parent: click.Context | None) -> Iterator[tuple[str, str]]:
    ctx = click.Context(command, info_name=path[-1], parent=parent, terminal_width=WIDTH, max_content_width=WIDTH)
    yield " ".join(path), command.get_help(ctx)
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, [*path, name], ctx)


def _shown(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, list):
        return ", ".join(value) or "(empty)"
    return str(value).lower() if isinstance(value, bool) else str(value)


def settings_table() -> str:
    rows = ["| setting | default | variable | what it is |", "| --- | --- | --- | --- |"]
    for key, (_section, _name, field) in SETTINGS.items():
        env = env_name(key)
        rows.append(f"| `{key}` | `{_shown(field.get_default(call_default_factory=True))}` | "
                    f"{f'`{env}`' if env else ''} | {field.description or ''} |")
    return "\n".join(rows) + "\n"


def render() -> str:
    parts = [HEADER]
    contents = [f"- [`{line}`](#{line.replace(' ', '-')})" for line, _text in helps()]
    parts.append("\n".join(contents) + "\n- [Settings](#settings)\n")
    for line, text in helps():
        parts.append(f"## {line}\n\n```text\n{text.rstrip()}\n```\n")
    parts.append("## Settings\n\n`xitui config set KEY VALUE` writes them to config.toml (a list is comma-separated); "
                 "a variable\nnamed here wins over the file. See [files and settings](files-and-settings.md).\n\n"
                 + settings_table())
    return "\n".join(parts)


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not TARGET.exists() or TARGET.read_text("utf-8") != text:
            print(f"{TARGET.relative_to(ROOT)} is out of date: run scripts/cli-reference", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, "utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
