"""The import graph points one way: core at the bottom, front ends on top, no circles, no `__main__`
imported; and the server and the worker load no terminal-UI library."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "xitui"

#: Each floor may import only floors below it (and its own package). Same floor: neither imports the other.
FLOORS = {
    "xitui": -1,  # xitui/__init__.py: the version, nothing else
    "wire": 0,  # what crosses between the server and its workers: types only
    "core": 1,
    "backends": 2, "client": 2,
    "worker": 3, "terminal": 3,
    "server": 4,
    "wizard": 5, "tui": 5,
    "cli": 6,
    "__main__": 7,  # python -m xitui
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    """Every xitui module `name` imports, wherever the import sits (functions and TYPE_CHECKING included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t == "xitui" or t.startswith("xitui."))
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "xitui"


def test_every_package_has_a_floor():
    """A new package must be given its place in FLOORS before it can be imported from."""
    assert {_floor(m) for m in MODULES} <= set(FLOORS)


def test_no_module_imports_a_floor_above_or_beside_it():
    wrong = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
             if _floor(a) != _floor(b) and FLOORS[_floor(b)] >= FLOORS[_floor(a)]]
    assert not wrong, "imports that run upward or sideways:\n" + "\n".join(sorted(wrong))


def test_no_import_circles():
    """Tarjan's strongly connected components over module imports: every component is a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH.get(v, ()):
            if w not in MODULES:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert not circles


def test_no_module_imports_a_main_module():
    wrong = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets if b.endswith("__main__")]
    assert not wrong


def test_the_checks_see_what_they_look_for():
    """The walk finds imports inside functions and relative ones (what the checks above rely on)."""
    assert "xitui.core.config" in GRAPH["xitui.server.serve"]
    assert "xitui.terminal.output" in GRAPH["xitui.wizard.finish"]  # imported inside a function


@pytest.mark.parametrize("module", ["xitui.server.app", "xitui.server.serve", "xitui.worker.process",
                                    "xitui.client", "xitui.core.registry"])
def test_server_worker_and_client_load_no_terminal_ui(module):
    """The server and its workers never pay for (or depend on) the front ends' libraries."""
    code = (f"import sys, {module}; print(' '.join(m for m in ('textual', 'questionary', 'typer', 'rich', "
            "'prompt_toolkit') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ""
