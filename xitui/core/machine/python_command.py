"""The command lines of xitui's own Python processes (the background server, its workers, the warm worker,
probes, the converter), with the working directory kept off their import path: `python -m` and `-c` put it
first, and started from a folder that holds a directory named `xitui` (a clone's parent, say) the server
died with "cannot import name '__version__' from 'xitui' (unknown location)"."""

from __future__ import annotations

import sys


def python(*args: str) -> list[str]:
    """This interpreter with `args` (`-m MODULE ...` or `-c CODE ...`): `-P` where Python has it (3.11+),
    else a first statement that takes the working directory off `sys.path` before anything is imported."""
    if sys.version_info >= (3, 11):
        return [sys.executable, "-P", *args]
    if args[:1] == ("-m",):
        code = f"import runpy, sys; del sys.path[0]; runpy.run_module({args[1]!r}, run_name='__main__', alter_sys=True)"
        return [sys.executable, "-c", code, *args[2:]]
    if args[:1] == ("-c",):
        return [sys.executable, "-c", "import sys; del sys.path[0]\n" + args[1], *args[2:]]
    return [sys.executable, *args]
