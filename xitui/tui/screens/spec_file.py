"""Register from a spec file: the path, checked as typed by the validator `register` uses, problems inline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from xitui.core.errors import SpecError, XituiError


def check_spec_file(text: str) -> tuple[str, str] | list[str]:
    """(model_type, spec text) for a valid spec file, else one line per problem."""
    from xitui.core.specs.spec import guess_model_type, parse_spec

    path = Path(text.strip()).expanduser()
    try:
        data = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})"]
    try:
        kind = guess_model_type(data)
        parse_spec(kind, data)
    except SpecError as exc:
        return exc.problems
    except XituiError as exc:
        return [str(exc)]
    return kind, data


class SpecFileModal(ModalScreen[dict[str, Any] | None]):
    """Register a spec file: its problems shown as the path is typed; dismissed with what to register."""

    DEFAULT_CSS = """
    SpecFileModal { align: center middle; }
    SpecFileModal > Vertical { width: 80; height: auto; border: thick $primary; background: $surface; padding: 0 1; }
    SpecFileModal #problems { color: $error; height: auto; max-height: 10; }
    SpecFileModal Horizontal { height: 3; align-horizontal: right; }
    SpecFileModal Button { margin-left: 1; }
    """
    BINDINGS = [Binding("escape", "dismiss(None)", "cancel", id="specfile.cancel")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Register a spec file (v1 or v2, LLM or embedding)   (Esc cancels)")
            yield Input(placeholder="/path/to/model.json", id="path")
            yield Static("", id="problems", markup=False)  # problems quote the file's values
            yield Checkbox("persist (keep across server restarts)", value=True, id="persist")
            with Horizontal():
                yield Button("Register", id="register", variant="primary")

    @on(Input.Changed, "#path")
    def _check(self, event: Input.Changed) -> None:
        if not event.value.strip():
            self.query_one("#problems", Static).update("")
            return
        found = check_spec_file(event.value)
        self.query_one("#problems", Static).update("\n".join(found) if isinstance(found, list) else "")

    @on(Input.Submitted, "#path")
    @on(Button.Pressed, "#register")
    def _register(self) -> None:
        found = check_spec_file(self.query_one("#path", Input).value)
        if isinstance(found, list):
            self.query_one("#problems", Static).update("\n".join(found))
            return
        kind, data = found
        self.dismiss({"model_type": kind, "model": data, "persist": self.query_one("#persist", Checkbox).value})
