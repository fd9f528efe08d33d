"""The dashboard against a running server: first paint, idle CPU, chat-pane streaming rate, memory.

    python bench/dashboard.py [--idle 10]

Beside each figure, the direct reference in the same run: a bare Textual app with a DataTable (first paint),
and the server's own streaming rate for the same request (chat pane). Targets (DESIGN.md): first full
paint with data <= 1.0 s; idle CPU with three models shown <= 2 % of a core; chat pane tokens/s >= 0.95 x
the server's; resident memory <= 120 MiB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time

import common  # puts the repository on sys.path

from tests.server.conftest import gguf_spec
from tests.server.test_embeddings import flat_spec


def paint_time(argv: list[str], marker: str) -> tuple[float, object]:
    """Seconds from spawning `argv` in a pseudo-terminal until `marker` is on screen; the child stays."""
    import pexpect

    start = time.perf_counter()
    child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=30, dimensions=(40, 120),
                          env={**os.environ, "TERM": "xterm-256color"})
    child.expect(marker)
    return time.perf_counter() - start, child


BARE = """
from textual.app import App
from textual.widgets import DataTable
class Bare(App):
    def compose(self):
        yield DataTable()
    def on_mount(self):
        t = self.query_one(DataTable); t.add_columns("uid", "state"); t.add_row("bare-ready", "ready")
Bare().run()
"""


def idle_cpu(child: object, seconds: float) -> tuple[float, float]:
    """(percent of one core, resident MiB) of the dashboard process while it sits idle."""
    import psutil

    proc = psutil.Process(child.pid)  # type: ignore[attr-defined]
    before = proc.cpu_times()
    start = time.monotonic()
    deadline = start + seconds
    while time.monotonic() < deadline:  # keep reading the pty so the app never blocks on output
        with contextlib.suppress(Exception):  # nothing to read is the idle case
            child.read_nonblocking(65536, timeout=0.2)  # type: ignore[attr-defined]
    after = proc.cpu_times()
    used = (after.user - before.user) + (after.system - before.system)
    return 100.0 * used / (time.monotonic() - start), proc.memory_info().rss / 2**20


def chat_rate(url: str, uid: str) -> tuple[float, float]:
    """(tokens/s shown in the chat pane, the server's own rate for that request)."""
    from xitui.client import Client
    from xitui.tui.dashboard_app import make_app
    from xitui.tui.widgets.chat import ChatPane

    async def main() -> tuple[float, float]:
        app = make_app(Client(url), url, "dark")
        async with app.run_test(size=(120, 40)) as pilot:
            while uid not in app.query_one(ChatPane).models:
                await pilot.pause(0.05)
            pane = app.query_one(ChatPane)
            pane.choose(uid)
            pane.generation = {"max_tokens": 200, "temperature": 0, "ignore_eos": True}
            await pane.send("Once upon a time")
            while pane.generating or pane.last_stats is None:
                await pilot.pause(0.05)
            server = Client(url).describe_model(uid)["metrics"]["last_tokens_per_s"]
            return pane.last_stats.tokens_per_s or 0.0, server

    return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    from tests.model_files import gguf_path
    from xitui.client import Client

    server = common.Server()
    client = Client(server.url)
    gguf = gguf_path()
    try:
        client.register_model("LLM", gguf_spec("bench-gemma", gguf))
        client.register_model("embedding", flat_spec("bench-minilm"))
        for uid in ("bench-gemma", "bench-gemma-2"):
            client.launch_model(model_name="bench-gemma", model_uid=uid)
        client.launch_model(model_name="bench-minilm", model_type="embedding")
        script = os.path.join(os.path.dirname(sys.executable), "xitui")

        bare, child = paint_time([sys.executable, "-c", BARE], "bare-ready")
        child.terminate(force=True)  # type: ignore[attr-defined]
        print(f"{'bare Textual app, first paint':<46} {bare * 1000:7.0f} ms")
        first, child = paint_time([script, "dashboard", "-e", server.url], "bench-minilm")
        verdict = "OK" if first <= 1.0 else "OVER the 1.0 s target"
        print(f"{'xitui dashboard, first full paint with data':<46} {first * 1000:7.0f} ms   "
              f"{first / bare:5.2f} x the bare app   {verdict}")
        time.sleep(2)  # let start-up settle before measuring idle
        cpu, rss = idle_cpu(child, args.idle)
        child.terminate(force=True)  # type: ignore[attr-defined]
        print(f"{'idle CPU, three models shown':<46} {cpu:7.2f} % of a core   "
              f"{'OK' if cpu <= 2.0 else 'OVER the 2 % target'}")
        print(f"{'resident memory':<46} {rss:7.1f} MiB   {'OK' if rss <= 120 else 'OVER the 120 MiB target'}")

        shown, served = chat_rate(server.url, "bench-gemma")
        ratio = shown / served if served else 0.0
        print(f"{'chat pane tokens/s (shown)':<46} {shown:7.1f}   server's own rate {served:.1f}   "
              f"{ratio:5.3f} x   {'OK' if ratio >= 0.95 else 'UNDER the 0.95 target'}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
