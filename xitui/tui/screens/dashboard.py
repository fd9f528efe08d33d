"""The dashboard screen: running models on top, chat, registrations and resources in tabs below, the
server read every second (paused while a modal covers it), and every action the footer lists."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane

from xitui.core.machine.python_command import python
from xitui.core.safe_text import safe, safe_line
from xitui.core.specs.bundled import BUNDLED_ORDER
from xitui.tui.data import Snapshot, fetch, fetch_registrations, mark_loadable, model_detail
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
#: While the chat pane shows an answer streaming, read the server this seldom: the reads (and the server's
#: answers to them) would take CPU from the model that writes it.
STREAMING_REFRESH = 5.0


class DataFetched(Message):
    """A read of the server, to put on screen."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class DataFailed(Message):
    """A read of the server failed; `reason` says why, in one line."""

    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class RegistrationsFetched(Message):
    """A read of the registrations: the rows of the types that answered, a line per type that did not."""

    def __init__(self, rows: list[dict[str, Any]], failed: list[str], say_failure: bool) -> None:
        super().__init__()
        self.rows, self.failed, self.say_failure = rows, failed, say_failure


class ActionDone(Message):
    """A change made from the dashboard finished: say so, and read the server again."""

    def __init__(self, text: str, error: bool = False) -> None:
        super().__init__()
        self.text, self.error = text, error


def _one_line(exc: Exception) -> str:
    from xitui.core.errors import XituiError

    text = " ".join(safe_line(exc).split())  # it may quote the server
    return text if isinstance(exc, XituiError) else f"{type(exc).__name__}: {text}"


class DashboardScreen(Screen[None]):
    """What the server runs and holds, and what can be done with it."""

    BINDINGS = [
        Binding("l", "launch", "Launch", id="launch", tooltip="Launch a registered model"),
        Binding("t", "terminate", "Terminate", id="terminate", tooltip="Terminate (or cancel) the selected model"),
        Binding("c", "chat", "Chat", id="chat", tooltip="Chat with the selected model"),
        Binding("r", "register", "Wizard", id="register", tooltip="Register a model with the wizard"),
        Binding("f", "register_file", "Spec file", id="register_file", tooltip="Register a spec file"),
        Binding("u", "unregister", "Unregister", id="unregister", tooltip="Unregister the selected registration"),
        Binding("k", "check", "Check", id="check", tooltip="Try live what the selected registration promises"),
        Binding("v", "view_spec", "Spec", id="view_spec", tooltip="View the selected model's spec"),
        Binding("g", "follow_log", "Log", id="follow_log", tooltip="Follow the selected model's worker log"),
        Binding("escape", "stop", "Stop", id="stop", tooltip="Stop the answer being written", show=False),
        # not Ctrl+Y: the chat input (a TextArea) takes that for redo, so it would never reach the screen
        Binding("ctrl+o", "copy_answer", "Copy", id="copy_answer", tooltip="Copy the last answer", show=False),
        Binding("ctrl+l", "clear_chat", "Clear", id="clear_chat", tooltip="Clear the conversation", show=False),
        Binding("1", "tab('chat')", "Chat tab", id="tab_chat", show=False),
        Binding("2", "tab('registrations')", "Registrations tab", id="tab_registrations", show=False),
        Binding("3", "tab('resources')", "Resources tab", id="tab_resources", show=False),
    ]

    #: Why the server does not answer (None: it does); the banner shows it.
    down: reactive[str | None] = reactive(None, init=False)

    def __init__(self, client: Any, endpoint: str, *, generation: dict[str, Any] | None = None,
                 chat_store: Any = None, refresh: float = REFRESH, live: bool = True) -> None:
        super().__init__()
        self.client = client
        self.endpoint = endpoint
        self.generation = generation or {}
        self.chat_store = chat_store
        #: The periodic reads get their own client with a read timeout: a server that stops answering shows
        #: as such instead of freezing the table (answers and launches may take as long as they take).
        self.poll_client = _polling(client)
        self.refresh_every = refresh
        #: False for snapshot tests: no reads of the server, the data is given with `show_snapshot`.
        self.live = live
        self.reads = 0
        self.want_registrations = True
        #: A registrations read is under way (it may wait out a read timeout): no second one meanwhile.
        self._reading_registrations = False
        self.last_snapshot: Snapshot | None = None
        self.registrations: list[dict[str, Any]] = []
        #: The registrations as last read (`registrations` adds whether each loads on request).
        self._read_rows: list[dict[str, Any]] = []
        self.first_paint: float | None = None
        self._covered = False
        #: A read came due while a modal covered the screen: it is made when the screen shows again.
        self._due = False

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        # what these two say quotes the server: text, never markup
        yield Static("", id="banner", markup=False)
        yield ModelsTable(id="models")
        yield Static("", id="model-detail", markup=False)
        with TabbedContent(id="tabs", initial="chat"):
            with TabPane("Chat", id="chat"):
                yield ChatPane(self.client, self.chat_store, self.generation, id="chat-pane")
            with TabPane("Registrations", id="registrations"):
                yield Registrations(id="registrations-pane")
            with TabPane("Resources", id="resources"):
                yield Resources(id="resources-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ModelsTable).focus()
        if self.live:
            self.read_server()

    # --- reading the server ------------------------------------------------------------------------

    def on_screen_suspend(self) -> None:
        self._covered = True

    def on_screen_resume(self) -> None:
        self._covered = False
        if self._due:
            self._due = False
            self.read_server()

    def _next_read(self, delay: float) -> None:
        streaming = self.live and self.query_one(ChatPane).generating
        self.set_timer(max(delay, STREAMING_REFRESH) if streaming else delay, self._read_if_shown)

    def _read_if_shown(self) -> None:
        if self._covered:
            self._due = True  # nobody sees the table under a modal: read again when it shows
        else:
            self.read_server()

    @work(thread=True, exclusive=True, group="read")
    def read_server(self) -> None:
        try:
            snapshot = fetch(self.poll_client)
        except Exception as exc:  # noqa: BLE001 - a broken answer is a failed read, not a crash
            self.post_message(DataFailed(_one_line(exc)))
            return
        self.post_message(DataFetched(snapshot))

    def read_registrations(self, say_failure: bool) -> None:
        """Read the registrations on a thread of its own. Not a Textual worker: quitting waits for those, and
        this read may be waiting out a read timeout (Xinference's LLM listing) that nobody needs any more."""

        def read() -> None:
            try:
                rows, failed = fetch_registrations(self.poll_client)
            except Exception as exc:  # noqa: BLE001 - as above
                rows, failed = [], [_one_line(exc)]
            with contextlib.suppress(RuntimeError):  # the dashboard has closed (and its event loop with it)
                self.post_message(RegistrationsFetched(rows, failed, say_failure))

        threading.Thread(target=read, daemon=True, name="read-registrations").start()

    @on(DataFetched)
    def _fetched(self, message: DataFetched) -> None:
        self.reads += 1
        due = self.want_registrations or self.reads % REGISTRATIONS_EVERY == 0
        if due and not self._reading_registrations:
            self._reading_registrations = True
            # a change made while this read runs asks again: the next read after it shows the change
            self.read_registrations(say_failure=self.want_registrations)
            self.want_registrations = False
        self.show_snapshot(message.snapshot)
        if self.down is not None:
            self.down = None
            self.notify(f"the server at {self.endpoint} answers again")
        self._next_read(self.refresh_every)

    @on(RegistrationsFetched)
    def _registrations_fetched(self, message: RegistrationsFetched) -> None:
        self._reading_registrations = False
        if message.failed and message.say_failure:  # said once: the next tries come with the periodic reads
            self.notify(f"registrations not read: {'; '.join(message.failed)}", severity="warning")
        if message.rows or not message.failed:
            self._read_rows = message.rows
            self._show_registrations()

    def _show_registrations(self) -> None:
        loadable = self.last_snapshot.loadable if self.last_snapshot is not None else {}
        self.registrations = mark_loadable(self._read_rows, loadable)
        self.query_one(Registrations).show(self.registrations)

    @on(DataFailed)
    def _failed(self, message: DataFailed) -> None:
        self.down = message.reason
        self._next_read(RETRY)

    def watch_down(self, reason: str | None) -> None:
        banner = self.query_one("#banner", Static)
        if reason is not None:
            banner.update(f"server not answering: {reason} — retrying every {RETRY:.0f} s")
        banner.set_class(reason is not None, "-shown")

    def show_snapshot(self, snapshot: Snapshot) -> None:
        """Put a reading on screen (also how snapshot tests give fixed data)."""
        before = self.last_snapshot.loadable if self.last_snapshot is not None else {}
        self.last_snapshot = snapshot
        self.query_one(ModelsTable).show(snapshot)
        self._show_detail()
        self.query_one(ChatPane).show_models(snapshot.models, snapshot.loadable)
        self.query_one(Resources).show(snapshot.resources)
        if snapshot.registrations is not None:  # given whole (snapshot tests)
            self.registrations = snapshot.registrations
            self.query_one(Registrations).show(snapshot.registrations)
        elif self._read_rows and snapshot.loadable.keys() != before.keys():
            self._show_registrations()
        if self.first_paint is None:
            self.first_paint = time.monotonic()

    @on(ModelsTable.RowHighlighted, "#models")
    def _show_detail(self) -> None:
        table = self.query_one(ModelsTable)
        uid = table.selected_uid
        text = model_detail(uid, table.models.get(uid or ""))
        if not table.models and self.last_snapshot is not None:
            text = "no model is running: press l to launch one"
            demos = [name for name in BUNDLED_ORDER if any(r.get("model_name") == name for r in self.registrations)]
            text += f" (the bundled {', '.join(demos)} are ready to launch)" if demos else ""
            if self.last_snapshot.loadable:
                text += "; or pick one in the chat pane: the first message loads it"
        self.query_one("#model-detail", Static).update(text)

    # --- changes made from here ---------------------------------------------------------------------

    @property
    def selected_uid(self) -> str | None:
        return self.query_one(ModelsTable).selected_uid

    @work(thread=True, group="change")
    def change(self, call: Callable[[], Any], done: Callable[[Any], str], registrations: bool = False) -> None:
        """Run one change on the server off the screen's thread; say how it went, then read again."""
        try:
            result = call()
        except Exception as exc:  # noqa: BLE001 - shown, never a crash of the dashboard
            self.post_message(ActionDone(_one_line(exc), error=True))
            return
        if registrations:
            self.want_registrations = True
        self.post_message(ActionDone(done(result)))

    @on(ActionDone)
    def _done(self, message: ActionDone) -> None:
        self.notify(message.text, severity="error" if message.error else "information",
                    timeout=8 if message.error else 4)
        if self.live:
            self.read_server()

    def confirm(self, question: str, then: Callable[[], Any]) -> None:
        from xitui.tui.screens.confirm import ConfirmModal

        self.app.push_screen(ConfirmModal(question), callback=lambda yes: then() if yes else None)

    # --- actions -------------------------------------------------------------------------------------

    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_launch(self) -> None:
        from xitui.tui.screens.launch import LaunchModal

        if not self.registrations:
            self.notify("no registrations read yet", severity="warning")
            return
        chosen = self.query_one(Registrations).selected
        estimator = self.client.estimate_launch if self.live else None

        def launch(args: dict[str, Any] | None) -> None:
            if args:
                self.change(lambda: self.client.launch_model(wait_ready=False, **args),
                            lambda uid: f"launching {uid}: progress shows in the table")

        self.app.push_screen(LaunchModal(self.registrations, chosen, estimator), callback=launch)

    def action_terminate(self) -> None:
        uid = self.selected_uid
        if uid is None:
            self.notify("select a running model first", severity="warning")
            return
        state = (self.query_one(ModelsTable).models.get(uid) or {}).get("state", "ready")
        verb = "Cancel the launch of" if state == "launching" else "Terminate"
        self.confirm(f"{verb} {uid}? Its worker process stops and its memory is freed.",
                     lambda: self.change(lambda: self.client.terminate_model(uid), lambda _: f"terminated {uid}"))

    def action_chat(self) -> None:
        uid = self.selected_uid
        self.query_one(TabbedContent).active = "chat"
        pane = self.query_one(ChatPane)
        if uid is not None and uid in pane.models:
            pane.choose(uid)
        pane.focus_input()

    def action_register(self) -> None:
        """Suspend the dashboard, run the wizard in this terminal, then come back and refresh."""
        import subprocess

        from textual.app import SuspendNotSupported

        try:
            with self.app.suspend():
                subprocess.run(python("-m", "xitui", "wizard", "-e", self.endpoint), check=False)
        except SuspendNotSupported:
            self.notify("this terminal cannot hand over to the wizard: run `xitui wizard` beside the dashboard",
                        severity="warning")
            return
        self.want_registrations = True
        if self.live:
            self.read_server()

    def action_register_file(self) -> None:
        from xitui.tui.screens.spec_file import SpecFileModal

        def register(found: dict[str, Any] | None) -> None:
            if found:
                import json

                name = json.loads(found["model"]).get("model_name")
                self.change(lambda: self.client.register_model(found["model_type"], found["model"],
                                                               persist=found["persist"]),
                            lambda _: f"registered {name}", registrations=True)

        self.app.push_screen(SpecFileModal(), callback=register)

    def action_unregister(self) -> None:
        item = self.query_one(Registrations).selected
        if item is None:
            self.query_one(TabbedContent).active = "registrations"
            self.notify("select a registration in the Registrations tab", severity="warning")
            return
        name, kind = item["model_name"], item["model_type"]
        if item.get("is_builtin"):
            self.notify(f"{name} is a builtin model: builtins cannot be unregistered", severity="warning")
            return
        self.confirm(f"Unregister {kind} model {name}?",
                     lambda: self.change(lambda: self.client.unregister_model(kind, name),
                                         lambda _: f"unregistered {name}", registrations=True))

    def _chosen_registration(self) -> dict[str, Any] | None:
        """The registration under the cursor in the Registrations tab, else the selected model's."""
        tabs = self.query_one(TabbedContent)
        item = self.query_one(Registrations).selected if tabs.active == "registrations" else None
        if item is None and self.selected_uid is not None:
            model = self.query_one(ModelsTable).models.get(self.selected_uid, {})
            item = next((r for r in self.registrations if r.get("model_name") == model.get("model_name")
                         and r.get("model_type") == model.get("model_type")), None)
        if item is None:
            self.notify("select a model or a registration", severity="warning")
        return item

    def action_view_spec(self) -> None:
        from xitui.tui.screens.text_view import SpecView

        item = self._chosen_registration()
        if item is not None:
            self.app.push_screen(SpecView(f"{item['model_type']} {item['model_name']}", item))

    def action_check(self) -> None:
        from xitui.tui.screens.check_view import CheckView

        item = self._chosen_registration()
        if item is None:
            return
        if not self.live:
            self.notify("no server to check on", severity="warning")
            return

        def checked(fixed: bool | None) -> None:
            if fixed:
                self.want_registrations = True
                self.read_server()

        self.app.push_screen(CheckView(self.client, item["model_type"], item["model_name"]), callback=checked)

    def action_follow_log(self) -> None:
        from xitui.tui.screens.text_view import LogView

        uid = self.selected_uid
        if uid is None:
            self.notify("select a running model", severity="warning")
            return
        self.app.push_screen(LogView(uid, self.client))

    def action_stop(self) -> None:
        if not self.query_one(ChatPane).stop() and isinstance(self.focused, Static):
            self.query_one(ModelsTable).focus()

    def action_copy_answer(self) -> None:
        # made safe: a pasted escape sequence would act in the terminal it is pasted into (an early end of a
        # bracketed paste runs the rest as typed keys)
        text = safe(self.query_one(ChatPane).last_answer)
        if text:
            self.app.copy_to_clipboard(text)
            self.notify("copied the last answer")

    async def action_clear_chat(self) -> None:
        await self.query_one(ChatPane).clear()


def _polling(client: Any) -> Any:
    if client is None or not hasattr(client, "base_url"):
        return client
    import httpx

    from xitui.client import Client

    return Client(client.base_url, client.api_key, timeout=httpx.Timeout(connect=5.0, read=10.0, write=10.0,
                                                                         pool=None))
