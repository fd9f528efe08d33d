"""`dashboard`: the full-screen view of models, memory and a live chat pane (also `xitui` alone on a terminal)."""

from __future__ import annotations

from typing import Annotated

import typer

from xitui.cli.common import ApiKey, Endpoint, connect, settings


def dashboard(
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
    theme: Annotated[str | None, typer.Option("--theme", help="dark, light, high-contrast, or your own.")] = None,
) -> None:
    """Full-screen dashboard: running models, registrations, GPU memory, and a chat pane."""
    from xitui.client import Client
    from xitui.terminal.pacing import yield_to_models
    from xitui.tui.dashboard_app import make_app

    # the first connection starts the background server when none answers; the dashboard's own reads do
    # not, so a server that goes away shows as such (a banner) instead of being restarted behind its back
    first = connect(endpoint, api_key)
    first.list_models()
    url = first.base_url
    client = Client(url, api_key or settings().api_key)
    yield_to_models(settings().niceness)  # after the server started: it and its workers keep their priority
    from xitui.tui.widgets.pictures import probe_terminal

    probe_terminal()  # what draws the chat's images, asked while the terminal is still ours
    make_app(client, url, theme).run()
