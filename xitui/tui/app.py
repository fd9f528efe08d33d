"""The dashboard app: running models on top; chat, registrations and resources in tabs below; actions in the
footer and the command palette. `make_app` is the one factory the CLI and the tests use."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from typing import Any

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from xitui.core.bundled import BUNDLED_ORDER
from xitui.tui.data import Snapshot, fetch
from xitui.tui.widgets.chat import ChatPane
from xitui.tui.widgets.models_table import ModelsTable
from xitui.tui.widgets.registrations import Registrations
from xitui.tui.widgets.resources import Resources

#: Seconds between reads of the server (the timer re-arms after each read, so reads never overlap).
REFRESH = 1.0
#: Registrations change rarely: read them every this many refreshes (and after each change made here).
REGISTRATIONS_EVERY = 10
#: After a failed read, wait this long before the next try.
RETRY = 2.0


class DataFetched(Message):
    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class DataFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class ActionDone(Message):
    """A change made from the dashboard finished: say so, and read the server again."""

    def __init__(self, text: str, error: bool = False) -> None:
        super().__init__()
        self.text, self.error = text, error


class XituiApp(App[None]):
    """The dashboard."""

    CSS_PATH = "app.tcss"
    TITLE = "xitui"
    BINDINGS = [
        Binding("l", "launch", "Launch", id="launch", tooltip="Launch a registered model"),
        Binding("t", "terminate", "Terminate", id="terminate", tooltip="Terminate (or cancel) the selected model"),
        Binding("c", "chat", "Chat", id="chat", tooltip="Chat with the selected model"),
        Binding("r", "register", "Wizard", id="register", tooltip="Register a model with the wizard"),
        Binding("f", "register_file", "Spec file", id="register_file", tooltip="Register a spec file"),
        Binding("u", "unregister", "Unregister", id="unregister", tooltip="Unregister the selected registration"),
        Binding("v", "view_spec", "Spec", id="view_spec", tooltip="View the selected model's spec"),
        Binding("g", "follow_log", "Log", id="follow_log", tooltip="Follow the selected model's worker log"),
        Binding("ctrl+t", "cycle_theme", "Theme", id="cycle_theme", tooltip="Next theme (remembered)"),
        Binding("escape", "stop", "Stop", id="stop", tooltip="Stop the answer being written", show=False),
        # not Ctrl+Y: the chat input (a TextArea) takes that for redo, so it would never reach the app
        Binding("ctrl+o", "copy_answer", "Copy", id="copy_answer", tooltip="Copy the last answer", show=False),
        Binding("ctrl+l", "clear_chat", "Clear", id="clear_chat", tooltip="Clear the conversation", show=False),
        Binding("1", "tab('chat')", "Chat tab", id="tab_chat", show=False),
        Binding("2", "tab('registrations')", "Registrations tab", id="tab_registrations", show=False),
        Binding("3", "tab('resources')", "Resources tab", id="tab_resources", show=False),
        Binding("q", "quit", "Quit", id="quit", tooltip="Quit (the server and its models keep running)"),
    ]

    def __init__(self, client: Any, endpoint: str, theme: str = "dark", *,
                 generation: dict[str, Any] | None = None, keymap: dict[str, str] | None = None,
                 refresh: float = REFRESH, live: bool = True, chat_store: Any = None) -> None:
        super().__init__()
        self.client = client
        #: Saved conversations (core/chats.py), shared with `xitui chat`; None keeps none.
        self.chat_store = chat_store
        #: The periodic reads get their own client with a read timeout: a server that stops answering shows
        #: as such instead of freezing the table (answers and launches may take as long as they take).
        self.poll_client = _polling(client)
        self.endpoint = endpoint
        self.theme_name = theme
        self.generation = generation or {}
        self.keymap = keymap or {}
        self.refresh_every = refresh
        #: False for snapshot tests: no reads of the server, the data is given with `show_snapshot`.
        self.live = live
        self.reads = 0
        self.want_registrations = True
        self.last_snapshot: Snapshot | None = None
        self.registrations: list[dict[str, Any]] = []
        self.first_paint: float | None = None
        self.down_since: float | None = None

    # --- layout --------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        yield Static("", id="banner")
        yield ModelsTable(id="models")
        yield Static("", id="model-detail")
        with TabbedContent(id="tabs", initial="chat"):
            with TabPane("Chat", id="chat"):
                yield ChatPane(id="chat-pane")
            with TabPane("Registrations", id="registrations"):
                yield Registrations(id="registrations-pane")
            with TabPane("Resources", id="resources"):
                yield Resources(id="resources-pane")
        yield Footer()

    def on_mount(self) -> None:
        from xitui.tui.themes import load_theme, theme_files

        for name in theme_files():
            with contextlib.suppress(Exception):
                self.register_theme(load_theme(name))  # type: ignore[arg-type]
        self.theme = f"xitui-{self.theme_name}"
        self.sub_title = self.endpoint
        if self.keymap:
            self.set_keymap(self.keymap)
        self._main_query(ModelsTable).focus()
        if self.live:
            self.read_server()

    def _main_query(self, selector: Any, kind: Any = None) -> Any:
        """A widget of the dashboard's own screen, whatever modal is on top (App.query_one would search the
        modal)."""
        screen = self.screen_stack[0] if self.screen_stack else self.screen
        return screen.query_one(selector, kind) if kind is not None else screen.query_one(selector)

    # --- reading the server ------------------------------------------------------------------------

    @work(thread=True, exclusive=True, group="read")
    def read_server(self) -> None:
        from xitui.core.errors import XituiError

        with_registrations = self.want_registrations or self.reads % REGISTRATIONS_EVERY == 0
        try:
            snapshot = fetch(self.poll_client, with_registrations)
        except XituiError as exc:
            self.post_message(DataFailed(" ".join(str(exc).split())))
            return
        except Exception as exc:  # noqa: BLE001 - a broken answer is a failed read, not a crash
            self.post_message(DataFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(DataFetched(snapshot))

    @on(DataFetched)
    def _fetched(self, message: DataFetched) -> None:
        if not self.is_running or not self.screen_stack:
            return  # a read that finished while the app closes
        self.reads += 1
        if message.snapshot.registrations is not None:
            self.want_registrations = False
        elif message.snapshot.registrations_error and self.want_registrations:
            self.want_registrations = False  # tried: the next try comes with the periodic ones
            self.notify(f"registrations not read: {message.snapshot.registrations_error}", severity="warning")
        self.show_snapshot(message.snapshot)
        if self.down_since is not None:
            self.down_since = None
            self.notify(f"the server at {self.endpoint} answers again")
        self.set_timer(self.refresh_every, self.read_server)

    @on(DataFailed)
    def _failed(self, message: DataFailed) -> None:
        if not self.is_running or not self.screen_stack:
            return
        banner = self._main_query("#banner", Static)
        self.down_since = self.down_since or time.monotonic()
        banner.update(f"server not answering: {message.reason} — retrying every {RETRY:.0f} s")
        banner.add_class("-shown")
        self.set_timer(RETRY, self.read_server)

    def show_snapshot(self, snapshot: Snapshot) -> None:
        """Put a reading on screen (also how snapshot tests give fixed data)."""
        self.last_snapshot = snapshot
        self._main_query("#banner", Static).remove_class("-shown")
        self._main_query(ModelsTable).show(snapshot)
        self._show_detail()
        self._main_query(ChatPane).show_models(snapshot.models)
        self._main_query(Resources).show(snapshot.resources)
        if snapshot.registrations is not None:
            self.registrations = snapshot.registrations
            self._main_query(Registrations).show(snapshot.registrations)
        if self.first_paint is None:
            self.first_paint = time.monotonic()

    @on(ModelsTable.RowHighlighted, "#models")
    def _show_detail(self) -> None:
        from xitui.tui.data import model_detail

        table = self._main_query(ModelsTable)
        uid = table.selected_uid
        text = model_detail(uid, table.models.get(uid or ""))
        if not table.models and self.last_snapshot is not None:
            text = "no model is running: press l to launch one"
            if any(r.get("model_name", "").startswith("demo-") for r in self.registrations):
                demos = [name for name in BUNDLED_ORDER
                         if any(r.get("model_name") == name for r in self.registrations)]
                text += f" (the bundled {', '.join(demos)} are ready to launch)" if demos else ""
        self._main_query("#model-detail", Static).update(text)

    # --- actions -------------------------------------------------------------------------------------

    @property
    def selected_uid(self) -> str | None:
        return self._main_query(ModelsTable).selected_uid

    def action_tab(self, tab: str) -> None:
        self._main_query(TabbedContent).active = tab

    def action_launch(self) -> None:
        from xitui.tui.screens.launch import LaunchModal

        chosen = self._main_query(Registrations).selected
        if not self.registrations:
            self.notify("no registrations read yet", severity="warning")
            return
        estimator = self.client.estimate_launch if self.live else None
        self.push_screen(LaunchModal(self.registrations, chosen, estimator), callback=self._launch_chosen)

    def _launch_chosen(self, args: dict[str, Any] | None) -> None:
        if args:
            self.launch(args)

    @work(thread=True, group="change")
    def launch(self, args: dict[str, Any]) -> None:
        from xitui.core.errors import XituiError

        try:
            uid = self.client.launch_model(wait_ready=False, **args)
        except XituiError as exc:
            self.post_message(ActionDone(f"launch failed: {exc}", error=True))
            return
        except Exception as exc:  # noqa: BLE001 - shown, never a crash of the dashboard
            self.post_message(ActionDone(f"launch failed: {type(exc).__name__}: {exc}", error=True))
            return
        self.post_message(ActionDone(f"launching {uid}: progress shows in the table"))

    def action_terminate(self) -> None:
        from xitui.tui.screens.confirm import ConfirmModal

        uid = self.selected_uid
        if uid is None:
            self.notify("select a running model first", severity="warning")
            return
        state = (self._main_query(ModelsTable).models.get(uid) or {}).get("state", "ready")
        verb = "Cancel the launch of" if state == "launching" else "Terminate"

        def answered(yes: bool | None) -> None:
            if yes:
                self.terminate(uid)

        self.push_screen(ConfirmModal(f"{verb} {uid}? Its worker process stops and its memory is freed."),
                         callback=answered)

    @work(thread=True, group="change")
    def terminate(self, uid: str) -> None:
        self._change(lambda: self.client.terminate_model(uid), f"terminated {uid}")

    def _change(self, call: Any, done: str, registrations: bool = False) -> None:
        from xitui.core.errors import XituiError

        try:
            call()
        except XituiError as exc:
            self.post_message(ActionDone(" ".join(str(exc).split()), error=True))
            return
        except Exception as exc:  # noqa: BLE001 - shown, never a crash of the dashboard
            self.post_message(ActionDone(f"{type(exc).__name__}: {exc}", error=True))
            return
        if registrations:
            self.want_registrations = True
        self.post_message(ActionDone(done))

    @on(ActionDone)
    def _done(self, message: ActionDone) -> None:
        self.notify(message.text, severity="error" if message.error else "information",
                    timeout=8 if message.error else 4)
        if self.live:
            self.read_server()

    def action_chat(self) -> None:
        uid = self.selected_uid
        self._main_query(TabbedContent).active = "chat"
        pane = self._main_query(ChatPane)
        if uid is not None and uid in pane.models:
            pane.choose(uid)
        pane.query_one("#chat-input").focus()

    def action_register(self) -> None:
        """Suspend the dashboard, run the wizard in this terminal, then come back and refresh."""
        import subprocess
        import sys

        from textual.app import SuspendNotSupported

        try:
            with self.suspend():
                subprocess.run([sys.executable, "-m", "xitui", "wizard", "-e", self.endpoint], check=False)
        except SuspendNotSupported:
            self.notify("this terminal cannot hand over to the wizard: run `xitui wizard` beside the dashboard",
                        severity="warning")
            return
        self.want_registrations = True
        if self.live:
            self.read_server()

    def action_register_file(self) -> None:
        from xitui.tui.screens.spec_file import SpecFileModal

        def chosen(found: dict[str, Any] | None) -> None:
            if found:
                self.register_spec(found)

        self.push_screen(SpecFileModal(), callback=chosen)

    @work(thread=True, group="change")
    def register_spec(self, found: dict[str, Any]) -> None:
        import json

        name = json.loads(found["model"]).get("model_name")
        self._change(lambda: self.client.register_model(found["model_type"], found["model"], persist=found["persist"]),
                     f"registered {name}", registrations=True)

    def action_unregister(self) -> None:
        from xitui.tui.screens.confirm import ConfirmModal

        item = self._main_query(Registrations).selected
        if item is None:
            self._main_query(TabbedContent).active = "registrations"
            self.notify("select a registration in the Registrations tab", severity="warning")
            return
        name, kind = item["model_name"], item["model_type"]
        if item.get("is_builtin"):
            self.notify(f"{name} is a builtin model: builtins cannot be unregistered", severity="warning")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.unregister(kind, name)

        self.push_screen(ConfirmModal(f"Unregister {kind} model {name}?"), callback=answered)

    @work(thread=True, group="change")
    def unregister(self, kind: str, name: str) -> None:
        self._change(lambda: self.client.unregister_model(kind, name), f"unregistered {name}", registrations=True)

    def action_view_spec(self) -> None:
        from xitui.tui.screens.text_view import SpecView

        tabs = self._main_query(TabbedContent)
        item = self._main_query(Registrations).selected if tabs.active == "registrations" else None
        if item is None and self.selected_uid is not None:
            model = self._main_query(ModelsTable).models.get(self.selected_uid, {})
            item = next((r for r in self.registrations if r.get("model_name") == model.get("model_name")
                         and r.get("model_type") == model.get("model_type")), None)
        if item is None:
            self.notify("select a model or a registration", severity="warning")
            return
        self.push_screen(SpecView(f"{item['model_type']} {item['model_name']}", item))

    def action_follow_log(self) -> None:
        from xitui.tui.screens.text_view import LogView

        uid = self.selected_uid
        if uid is None:
            self.notify("select a running model", severity="warning")
            return
        self.push_screen(LogView(uid))

    def action_cycle_theme(self) -> None:
        from xitui.tui.themes import theme_files

        names = list(theme_files())
        current = names.index(self.theme_name) if self.theme_name in names else -1
        self.theme_name = names[(current + 1) % len(names)]
        self.theme = f"xitui-{self.theme_name}"
        self.notify(f"theme: {self.theme_name}", timeout=2)
        with contextlib.suppress(Exception):
            from xitui.core.config import set_value

            set_value("theme", self.theme_name)

    def action_stop(self) -> None:
        if not self._main_query(ChatPane).stop() and isinstance(self.focused, Static):
            self._main_query(ModelsTable).focus()

    def action_copy_answer(self) -> None:
        text = self._main_query(ChatPane).last_answer
        if text:
            self.copy_to_clipboard(text)
            self.notify("copied the last answer")

    async def action_clear_chat(self) -> None:
        await self._main_query(ChatPane).clear()

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for binding in self.BINDINGS:
            if isinstance(binding, Binding) and binding.id and binding.action not in ("quit",) \
                    and not binding.action.startswith("tab"):
                yield SystemCommand(binding.description, binding.tooltip or binding.description,
                                    lambda action=binding.action: self.run_action(action))


def _polling(client: Any) -> Any:
    if client is None or not hasattr(client, "base_url"):
        return client
    import httpx

    from xitui.client import Client

    return Client(client.base_url, client.api_key, timeout=httpx.Timeout(connect=5.0, read=10.0, write=10.0,
                                                                         pool=None))


def make_app(client: Any, endpoint: str, theme: str | None = None, **kwargs: Any) -> XituiApp:
    """The dashboard for `client`; the CLI and the tests build it here. `theme` defaults to the config's."""
    from xitui.core.config import load_config
    from xitui.tui.themes import DEFAULT_THEME, theme_files

    config = load_config()
    name = theme or config.theme or DEFAULT_THEME
    if name not in theme_files():
        from xitui.core.errors import XituiError

        raise XituiError(f"no theme {name!r} (themes: {', '.join(theme_files())})")
    kwargs.setdefault("generation", {k: v for k, v in config.generation.items() if v is not None})
    kwargs.setdefault("keymap", config.keymap)
    if "chat_store" not in kwargs and kwargs.get("live", True) and config.chats.get("save", True):
        from xitui.core.chats import ChatStore
        from xitui.core.config import home_dir

        kwargs["chat_store"] = ChatStore(home_dir())
    return XituiApp(client, endpoint, name, **kwargs)
