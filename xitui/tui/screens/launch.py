"""The launch modal: pick a registration and its format, size, quantization, engine, uid, GPU layers,
context length, slots, speculative decoding, replicas, idle ttl and restore; shows the memory estimate as
the choices change; returns the launch arguments (or None when cancelled)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from xitui.core.safe_text import safe_line
from xitui.tui.data import sort_registrations

#: Asks the server for the estimate of a launch (Client.estimate_launch); None: the server cannot.
Estimator = Callable[..., dict[str, Any]]


def _options(values: list[Any]) -> list[tuple[Text, Any]]:
    """Select options for values a server sent (names, formats): labels as safe text, never markup."""
    return [(Text(safe_line(v), end=""), v) for v in dict.fromkeys(values)]


class LaunchModal(ModalScreen[dict[str, Any] | None]):
    """Launch a registration: its settings and the memory estimate as they change; dismissed with the
    launch's arguments."""

    DEFAULT_CSS = """
    LaunchModal { align: center middle; }
    LaunchModal > Vertical { width: 76; max-height: 95%; height: auto; border: thick $primary;
                             background: $surface; padding: 0 1; }
    LaunchModal VerticalScroll { height: auto; max-height: 18; }
    LaunchModal .row { height: 1; }
    LaunchModal .row Label { width: 16; }
    LaunchModal .row Select, LaunchModal .row Input { width: 1fr; }
    LaunchModal #launch-title { text-style: bold; margin-bottom: 1; }
    LaunchModal #launch-buttons { height: 3; align-horizontal: right; }
    LaunchModal #launch-buttons Button { margin-left: 1; }
    LaunchModal #estimate { height: auto; margin-bottom: 1; color: $text-muted; }
    LaunchModal #estimate.too-big { color: $error; }
    LaunchModal Checkbox { border: none; padding: 0; height: 1; }
    """
    BINDINGS = [Binding("escape", "cancel", "cancel", id="launch.cancel")]

    def __init__(self, registrations: list[dict[str, Any]], chosen: dict[str, Any] | None = None,
                 estimator: Estimator | None = None) -> None:
        super().__init__()
        self.estimator = estimator
        #: The last estimate said it does not fit: the launch button then forces it.
        self.too_big = False
        self.registrations = {f"{r['model_type']}/{r['model_name']}": r for r in sort_registrations(registrations)}
        first = next(iter(self.registrations), None)
        self.chosen = f"{chosen['model_type']}/{chosen['model_name']}" if chosen else first

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
                    ("slots", Input(placeholder="from the machine (requests decoded together)", id="slots",
                                    type="integer", compact=True)),
                    ("speculative", Select([(Text("ngram: drafts from the prompt and answer"), "ngram"),
                                            (Text("off"), "off")], id="speculative", allow_blank=True,
                                           prompt="default (config: off)", compact=True)),
                    ("replicas", Input(placeholder="1 worker process", id="replicas", type="integer", compact=True)),
                    ("unload idle", Input(placeholder="after: 30s, 10m, 1h (default: config)", id="ttl",
                                          compact=True)),
                    ("restore", Checkbox("bring it back when the server starts", id="restore", compact=True)),
                ):
                    with Horizontal(classes="row"):
                        yield Label(label)
                        yield widget
            yield Static("", id="estimate", markup=False)  # it quotes the server
            with Horizontal(id="launch-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Launch", id="launch", variant="primary")

    def on_mount(self) -> None:
        self._fill()
        self.query_one("#launch", Button).focus()  # l, Enter: launch the registration highlighted

    # --- the estimate ----------------------------------------------------------------------------

    @on(Select.Changed)
    @on(Input.Changed, "#context, #replicas, #gpu-layers, #slots")
    def _choices_changed(self) -> None:
        args = self.launch_args()
        if args is None or self.estimator is None:
            self.query_one("#estimate", Static).update("")
            return
        args.pop("force", None)
        args.pop("restore", None)
        args.pop("ttl", None)
        self._estimate(args)

    @work(thread=True, exclusive=True, group="estimate")
    def _estimate(self, args: dict[str, Any]) -> None:
        assert self.estimator is not None
        try:
            found = self.estimator(**args)
        except Exception as exc:  # noqa: BLE001 - a bad choice (or Xinference) is shown, never a crash
            text, too_big = f"no estimate: {exc}", False
        else:
            if found.get("estimate") is None:
                text, too_big = f"no estimate: {found.get('reason')}", False
            else:
                too_big = not found["fits"]
                text = ("does not fit: " if too_big else "fits: ") + str(found.get("line", ""))
        self.app.call_from_thread(self._show_estimate, text, too_big)

    def _show_estimate(self, text: str, too_big: bool) -> None:
        self.too_big = too_big
        shown = self.query_one("#estimate", Static)
        shown.update(safe_line(text))
        shown.set_class(too_big, "too-big")
        self.query_one("#launch", Button).label = "Launch anyway" if too_big else "Launch"

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
        self.query_one("#uid", Input).placeholder = safe_line(reg.get("model_name") or "the model name")
        context = self.query_one("#context", Input)
        context.placeholder = f"the spec's: {reg['context_length']}" if reg.get("context_length") else "the spec's"
        context.disabled = self.query_one("#gpu-layers", Input).disabled = not llm
        gguf = any(s.get("model_format") in ("ggufv2", "gguf") for s in specs)
        self.query_one("#slots", Input).disabled = not (llm and gguf)
        self.query_one("#speculative", Select).disabled = not (llm and gguf)

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
        args = self.launch_args()
        if args is None:
            self.notify("choose a registration", severity="warning")
            return
        self.dismiss(args)

    def launch_args(self) -> dict[str, Any] | None:
        """The launch arguments the fields say (None: no registration chosen)."""
        reg = self.registration
        if reg is None:
            return None
        args: dict[str, Any] = {"model_name": reg["model_name"], "model_type": reg["model_type"]}
        for key, field in (("format", "model_format"), ("size", "model_size_in_billions"),
                           ("quantization", "quantization")):
            value = self.query_one(f"#{key}", Select).value
            if value is not Select.NULL:
                args[field] = value
        for key, field in (("engine", "model_engine"), ("uid", "model_uid"), ("ttl", "ttl")):
            text = self.query_one(f"#{key}", Input).value.strip()
            if text:
                args[field] = text
        for key, field in (("gpu-layers", "n_gpu_layers"), ("context", "context_length"), ("replicas", "replica"),
                           ("slots", "n_parallel")):
            widget = self.query_one(f"#{key}", Input)
            text = widget.value.strip()
            llm_field = reg["model_type"] == "LLM" or field == "replica"
            if text.lstrip("-").isdigit() and not widget.disabled and llm_field:
                args[field] = int(text)
        speculative = self.query_one("#speculative", Select)
        if speculative.value is not Select.NULL and not speculative.disabled:
            args["speculative"] = speculative.value
        if self.query_one("#restore", Checkbox).value:
            args["restore"] = True
        if self.too_big:
            args["force"] = True
        return args
