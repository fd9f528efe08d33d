"""The `xitui` program run in-process, as the console script runs it (its entry point, its one-line errors and
exit codes), its standard streams captured: for option and error tests, hundreds of times faster than a new
process. Tests of what a process adds (start-up imports, a terminal, signals) run the installed script."""

from __future__ import annotations

import sys
from dataclasses import dataclass

from click.testing import CliRunner

from xitui.cli.main import main


@dataclass
class Ran:
    """What a run of the program left: its exit code and what it wrote."""

    returncode: int
    stdout: str
    stderr: str


def xitui(*args: str, stdin: str | None = None, env: dict[str, str] | None = None) -> Ran:
    """Run `xitui ARGS` in this process, `stdin` as its input."""
    with CliRunner().isolation(input=stdin, env=env) as (out, err, _):
        code = 0
        try:
            main(list(args))
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        return Ran(code, out.getvalue().decode(), err.getvalue().decode())
