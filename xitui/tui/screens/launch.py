"""The launch modal: pick a registration and its format, size, quantization, engine, uid, GPU layers and
context length; returns the launch arguments (or None when cancelled)."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select


def _options(values: list[Any]) -> list[tuple[str, Any]]:
    return [(str(v), v) for v in dict.fromkeys(values)]


class LaunchModal(ModalScreen[dict[str, Any] | None]):
    DEFAULT_CSS = """
    LaunchModal { align: center middle; }
    LaunchModal > Vertical { width: 76; max-height: 95%; height: auto; border: thick $primary;
                             background: $surface; padding: 0 1; }
    LaunchModal VerticalScroll { height: auto; max-height: 18; }
    LaunchModal .row { height: 1; margin-bottom: 1; }
    LaunchModal .row Label { width: 16; }
    LaunchModal .row Select, LaunchModal .row Input { width: 1fr; }
    LaunchModal #launch-title { text-style: bold; margin-bottom: 1; }
    LaunchModal #launch-buttons { height: 3; align-horizontal: right; }
    LaunchModal #launch-buttons Button { margin-left: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "cancel", id="launch.cancel")]

    def __init__(self, registrations: list[dict[str, Any]], chosen: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.registrations = {f"{r['model_type']}/{r['model_name']}": r for r in registrations}
        self.chosen = f"{chosen['model_type']}/{chosen['model_name']}" if chosen else next(iter(self.registrations), None)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Launch a model   (Esc cancels)", id="launch-title")
            with VerticalScroll():
                for label, widget in (
                    ("registration", Select(_options(list(self.registrations)), value=self.chosen or Select.NULL,
                                            id="registration", allow_blank=False, compact=True) if self.registrations
                     else Label("no registrations")),
                    ("format", Select([], id="format", allow_blank=True, prompt="inferred", compact=True)),
                    ("size (B)", Select([], id="size", allow_blank=True, prompt="any", compact=True)),
                    ("quantization", Select([], id="quantization", allow_blank=True, prompt="any", compact=True)),
                    ("engine", Input(placeholder="inferred from the format", id="engine", compact=True)),
                    ("uid", Input(placeholder="the model name", id="uid", compact=True)),
                    ("GPU layers", Input(placeholder="all on a GPU, none on CPU (-1 = all)", id="gpu-layers",
                                         type="integer", compact=True)),
                    ("context length", Input(placeholder="the spec's", id="context", type="integer", compact=True)),
                ):
                    with Horizontal(classes="row"):
                        yield Label(label)
                        yield widget
            with Horizontal(id="launch-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Launch", id="launch", variant="primary")

    def on_mount(self) -> None:
        self._fill()
        self.query_one("#launch", Button).focus()  # l, Enter: launch the registration highlighted

    @on(Input.Submitted)
    def _submitted(self) -> None:
        self.action_launch()

    @property
    def registration(self) -> dict[str, Any] | None:
        select = self.query("#registration")
        if not select:
            return None
        value = select.first(Select).value
        return self.registrations.get(str(value)) if value is not Select.NULL else None

    @on(Select.Changed, "#registration")
    def _fill(self) -> None:
        reg = self.registration or {}
        specs = reg.get("model_specs") or []
        llm = reg.get("model_type") == "LLM"
        for key, values in (("format", [s.get("model_format") for s in specs]),
                            ("size", [s.get("model_size_in_billions") for s in specs if llm]),
                            ("quantization", [s.get("quantization") for s in specs])):
            select = self.query_one(f"#{key}", Select)
            select.set_options(_options([v for v in values if v is not None]))
        self.query_one("#uid", Input).placeholder = str(reg.get("model_name") or "the model name")
        context = self.query_one("#context", Input)
        context.placeholder = f"the spec's: {reg['context_length']}" if reg.get("context_length") else "the spec's"
        context.disabled = self.query_one("#gpu-layers", Input).disabled = not llm

    @on(Select.Changed, "#format")
    def _narrow(self, event: Select.Changed) -> None:
        specs = (self.registration or {}).get("model_specs") or []
        if event.value is not Select.NULL:
            specs = [s for s in specs if s.get("model_format") == event.value]
        for key, field in (("size", "model_size_in_billions"), ("quantization", "quantization")):
            self.query_one(f"#{key}", Select).set_options(_options([s.get(field) for s in specs if s.get(field)]))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "cancel":
            self.dismiss(None)
        elif event.button.id == "launch":
            self.action_launch()

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_launch(self) -> None:
        reg = self.registration
        if reg is None:
            self.notify("choose a registration", severity="warning")
            return
        args: dict[str, Any] = {"model_name": reg["model_name"], "model_type": reg["model_type"]}
        for key, field in (("format", "model_format"), ("size", "model_size_in_billions"),
                           ("quantization", "quantization")):
            value = self.query_one(f"#{key}", Select).value
            if value is not Select.NULL:
                args[field] = value
        for key, field in (("engine", "model_engine"), ("uid", "model_uid")):
            text = self.query_one(f"#{key}", Input).value.strip()
            if text:
                args[field] = text
        for key, field in (("gpu-layers", "n_gpu_layers"), ("context", "context_length")):
            text = self.query_one(f"#{key}", Input).value.strip()
            if text and reg["model_type"] == "LLM":
                args[field] = int(text)
        self.dismiss(args)
