"""The dashboard app: themes, the keymap, the command palette and quitting; what it shows is the dashboard
screen's (screens/dashboard.py). `make_app` is the one factory the CLI and the tests use."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import SeverityLevel
from textual.screen import Screen

from xitui.core.safe_text import safe, safe_line
from xitui.tui.screens.dashboard import REFRESH, DashboardScreen


class XituiApp(App[None]):
    """The dashboard: one `DashboardScreen` for `client`, and the modals it opens."""

    CSS_PATH = "app.tcss"
    TITLE = "xitui"
    BINDINGS = [
        Binding("ctrl+t", "cycle_theme", "Theme", id="cycle_theme", tooltip="Next theme (remembered)"),
        Binding("q", "quit", "Quit", id="quit", tooltip="Quit (the server and its models keep running)"),
    ]

    def __init__(self, client: Any, endpoint: str, theme: str = "dark", *,
                 generation: dict[str, Any] | None = None, keymap: dict[str, str] | None = None,
                 refresh: float = REFRESH, live: bool = True, chat_store: Any = None) -> None:
        super().__init__()
        self.client = client
        self.endpoint = endpoint
        self.theme_name = theme
        self.keymap = keymap or {}
        #: `chat_store`: saved conversations (core/saved_chats.py), shared with `xitui chat`; None keeps none.
        self._screen_settings = dict(generation=generation, chat_store=chat_store, refresh=refresh, live=live)
        self.dashboard: DashboardScreen | None = None

    def get_default_screen(self) -> DashboardScreen:
        """The dashboard, made here so that it belongs to the running app."""
        self.dashboard = DashboardScreen(self.client, self.endpoint, **self._screen_settings)
        return self.dashboard

    def on_mount(self) -> None:
        from xitui.tui.themes import load_theme, theme_files

        for name in theme_files():
            with contextlib.suppress(Exception):
                self.register_theme(load_theme(name))  # type: ignore[arg-type]
        self.theme = f"xitui-{self.theme_name}"
        self.sub_title = self.endpoint
        if self.keymap:
            self.set_keymap(self.keymap)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification of the dashboard (widgets' and screens' come here): plain text, made safe, as
        they quote servers (errors, names); none is markup."""
        super().notify(safe(str(message)), title=safe_line(title), severity=severity, timeout=timeout, markup=False)

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

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Textual's own commands, then every action the dashboard and the app bind (by their tooltips)."""
        yield from super().get_system_commands(screen)
        for owner, bindings in ((self.dashboard, DashboardScreen.BINDINGS), (self, self.BINDINGS)):
            for binding in bindings:
                if isinstance(binding, Binding) and binding.id and binding.action != "quit" \
                        and not binding.action.startswith("tab"):
                    yield SystemCommand(binding.description, binding.tooltip or binding.description,
                                        lambda o=owner, action=binding.action: o.run_action(action))


def make_app(client: Any, endpoint: str, theme: str | None = None, **kwargs: Any) -> XituiApp:
    """The dashboard for `client`; the CLI and the tests build it here. `theme` defaults to the config's."""
    from xitui.core.config import load_config
    from xitui.tui.themes import DEFAULT_THEME, theme_files

    config = load_config()
    name = theme or config.theme or DEFAULT_THEME
    if name not in theme_files():
        from xitui.core.errors import XituiError

        raise XituiError(f"no theme {name!r} (themes: {', '.join(theme_files())})")
    kwargs.setdefault("generation", config.generation.model_dump())
    kwargs.setdefault("keymap", config.keymap)
    if "chat_store" not in kwargs and kwargs.get("live", True) and config.chats.save:
        from xitui.core.config import home_dir
        from xitui.core.saved_chats import ChatStore

        kwargs["chat_store"] = ChatStore(home_dir())
    return XituiApp(client, endpoint, name, **kwargs)
