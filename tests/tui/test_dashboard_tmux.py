"""The installed `xitui dashboard` in a real terminal (tmux), read back as a person sees it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import xitui_cmd
from tests.server.conftest import ServerProcess
from tests.tmux import wait_for, wait_gone

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")


def test_dashboard_in_tmux_shows_the_models_table_and_the_bundled_models(server: ServerProcess,
                                                                         tmp_path: Path) -> None:
    session = f"xitui-test-{server.port}"
    command = " ".join([*xitui_cmd(), "dashboard", "-e", server.url])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command], check=True)
    try:
        shown = wait_for(session, "uid")
        for column in ("state", "engine", "RAM", "req"):
            assert column in shown
        assert "no model is running: press l" in wait_for(session, "no model is running")
        # the dashboard yields the CPU to the models: every thread 10 nice steps below the server's
        import os

        import psutil

        pane = psutil.Process(int(subprocess.run(["tmux", "display", "-p", "-t", session, "#{pane_pid}"],
                                                 capture_output=True, text=True, check=True).stdout))
        dashboard = next(p for p in [pane, *pane.children(recursive=True)] if "dashboard" in p.cmdline())
        server_nice = psutil.Process(server.proc.pid).nice()
        assert {os.getpriority(os.PRIO_PROCESS, t.id) for t in dashboard.threads()} == {min(19, server_nice + 10)}
        subprocess.run(["tmux", "send-keys", "-t", session, "2"], check=True)
        shown = wait_for(session, "demo-gemma3-270m")
        assert "demo-minilm" in shown and "builtin" in shown
        assert shown.index("demo-gemma3-270m") < shown.index("llama-2-chat") if "llama-2-chat" in shown else True
        subprocess.run(["tmux", "send-keys", "-t", session, "q"], check=True)
        wait_gone(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
