"""The import graph is a checked contract: two stacks on shared ground, joined only in `cli` (ARCHITECTURE.md);
rooms inside `core` and `server` in a fixed order; no circles at run time, no `__main__` imported; and the server
and the worker load no terminal-UI library."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "xitui"

#: What every package stands on, bottom first: each may import only what is below it.
GROUND = ["xitui", "wire", "core"]  # xitui/__init__.py: the version; wire: what crosses process edges, types only
#: The two stacks, bottom first: a package may import the ground and what is below it in its own stack, never
#: the other stack. Packages on one step (a tuple) import neither each other.
STACKS = {
    "running models": ["backends", "worker", "server"],
    "front ends": ["client", "terminal", ("wizard", "tui")],
}
#: Where the stacks meet: the command line (it serves, and it talks to a server), and `python -m xitui`.
TOP = ["cli", "__main__"]
#: Rooms of a package, bottom first: a room's modules import rooms below it at run time (a type-only import may
#: point up: it never runs). A package's own top-level modules are the room named "".
ROOMS = {
    "core": ["", "chat_format", "specs", "model_files", "machine"],
    "server": ["edge", "runtime", "api", ""],
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(name: str, path: Path) -> dict[str, bool]:
    """Every xitui module `name` imports, wherever the import sits (functions included), each with whether it
    is type-only (under `if TYPE_CHECKING:`)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, bool] = {}

    def visit(node: ast.AST, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                for inner in child.body:
                    visit_one(inner, True)
                for inner in child.orelse:
                    visit_one(inner, type_only)
            else:
                visit_one(child, type_only)

    def visit_one(node: ast.AST, type_only: bool) -> None:
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], *filter(None, [base])])
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        for target in targets:
            if target == "xitui" or target.startswith("xitui."):
                found[target] = found.get(target, True) and type_only
        visit(node, type_only)

    visit(ast.parse(path.read_text("utf-8")), False)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
#: What runs: type-only imports left out.
RUN_GRAPH = {name: {t for t, type_only in targets.items() if not type_only} for name, targets in GRAPH.items()}


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "xitui"


def _may_import(importer: str, imported: str) -> bool:
    """Whether package `importer` may import package `imported` (see GROUND, STACKS, TOP)."""
    if importer == imported:
        return True
    if imported in GROUND:
        return importer not in GROUND or GROUND.index(imported) < GROUND.index(importer)
    if importer in TOP:
        return imported not in TOP or TOP.index(imported) < TOP.index(importer)
    for steps in STACKS.values():
        names = [step if isinstance(step, tuple) else (step,) for step in steps]
        level = {name: i for i, step in enumerate(names) for name in step}
        if importer in level and imported in level:
            return level[imported] < level[importer]
    return False


def _room(module: str) -> tuple[str, int] | None:
    """The package and the room's place in it, for a module of a package with rooms."""
    parts = module.split(".")
    rooms = ROOMS.get(parts[1]) if len(parts) > 1 else None
    if rooms is None:
        return None
    inner = ".".join(parts[:3])
    room = parts[2] if len(parts) > 3 or (len(parts) == 3 and MODULES[inner].name == "__init__.py") else ""
    return parts[1], rooms.index(room)


def test_every_package_and_room_has_its_place():
    """A new package, or a new room of core or server, must be given its place before it can be used."""
    placed = set(GROUND) | set(TOP) | {n for steps in STACKS.values() for s in steps
                                        for n in (s if isinstance(s, tuple) else (s,))}
    assert {_package(m) for m in MODULES} <= placed
    for package, rooms in ROOMS.items():
        found = {p.name for p in (PACKAGE / package).iterdir() if (p / "__init__.py").exists()}
        assert found == set(rooms) - {""}, f"{package}'s rooms"


def test_each_stack_imports_only_the_ground_and_its_own_floors_below():
    wrong = [f"{a} -> {b}" for a, targets in GRAPH.items() for b in targets
             if not _may_import(_package(a), _package(b))]
    assert not wrong, "imports that run upward, sideways or across the stacks:\n" + "\n".join(sorted(wrong))


def test_rooms_import_only_rooms_below_them_at_run_time():
    wrong = []
    for a, targets in RUN_GRAPH.items():
        here = _room(a)
        for b in targets:
            there = _room(b)
            if here and there and here[0] == there[0] and there[1] > here[1]:
                wrong.append(f"{a} -> {b}")
    assert not wrong, "imports from a room above:\n" + "\n".join(sorted(wrong))


def test_no_import_circles_at_run_time():
    """Tarjan's strongly connected components over run-time imports: every component is a single module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in RUN_GRAPH.get(v, ()):
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


def test_architecture_names_every_package_and_room():
    """ARCHITECTURE.md is the map: every package and every room is on it, as `name/`."""
    text = (ROOT / "ARCHITECTURE.md").read_text("utf-8")
    named = set(re.findall(r"`([a-z_]+(?:/[a-z_]+)?)/`", text))
    packages = {_package(m) for m in MODULES} - {"xitui", "__main__", "wire"}
    rooms = {f"{package}/{room}" for package, names in ROOMS.items() for room in names if room}
    assert packages | rooms <= named, f"not on the map: {sorted((packages | rooms) - named)}"


def test_the_checks_see_what_they_look_for():
    """The walk finds imports inside functions, type-only ones, and the two stacks apart."""
    assert "xitui.core.config" in GRAPH["xitui.server.serve"]
    assert "xitui.terminal.output" in GRAPH["xitui.wizard.finish"]  # imported inside a function
    assert GRAPH["xitui.client.client"].get("xitui.wire") is True  # under TYPE_CHECKING: type-only
    assert not _may_import("tui", "server") and not _may_import("server", "client") and _may_import("cli", "server")
    assert _room("xitui.core.errors") == ("core", 0) and _room("xitui.core.specs.spec") == ("core", 2)
    assert _room("xitui.core.model_files.inspect.local") == ("core", 3) and _room("xitui.server.serve") == ("server", 3)
    assert not _may_import("wizard", "tui") and _may_import("tui", "terminal") and _may_import("core", "wire")


@pytest.mark.parametrize("module", ["xitui.server.api.routes", "xitui.server.serve", "xitui.worker.process",
                                    "xitui.client", "xitui.core.specs.registry"])
def test_server_worker_and_client_load_no_terminal_ui(module):
    """The server and its workers never pay for (or depend on) the front ends' libraries."""
    code = (f"import sys, {module}; print(' '.join(m for m in ('textual', 'questionary', 'typer', 'rich', "
            "'prompt_toolkit') if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == ""
