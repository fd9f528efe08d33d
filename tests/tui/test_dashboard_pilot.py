"""The dashboard driven by Pilot (real key presses) against a real server with the real bundled models."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.model_files import reranker_dir
from tests.server.conftest import ServerProcess, gguf_spec
from tests.support.pilot import until
from xitui.client import Client
from xitui.tui.dashboard_app import XituiApp, make_app
from xitui.tui.data import state_text
from xitui.tui.widgets.chat import ChatPane
from xitui.tui.widgets.models_table import ModelsTable
from xitui.tui.widgets.transcript import Transcript


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory, small_gguf: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("dash-home"))
    Client(srv.url).register_model("LLM", gguf_spec("dash-llm", small_gguf, context_length=1024))
    yield srv
    srv.stop()


@pytest.fixture
def dash_server(shared_server: ServerProcess) -> Iterator[ServerProcess]:
    """The module's server with nothing running: a test that fails midway leaves no model behind for the next
    (a model left running is selected first and changes what the next test's keys act on)."""
    yield shared_server
    client = Client(shared_server.url)
    for uid in client.list_models():
        client.terminate_model(uid)


def run(test: Callable[[XituiApp, Any], Any], url: str, size: tuple[int, int] = (120, 40)) -> None:
    """Run `test(app, pilot)` inside a live dashboard on `url`."""

    async def main() -> None:
        app = make_app(Client(url), url, "dark", refresh=0.3)
        async with app.run_test(size=size) as pilot:
            await test(app, pilot)

    asyncio.run(main())


async def type_text(pilot: Any, text: str) -> None:
    for key in text:
        await pilot.press(key if key != " " else "space")


def state_of(app: XituiApp, uid: str) -> str:
    table = app.query_one(ModelsTable)
    row = table._rows.get(uid)
    return table.models.get(uid, {}) and state_text(table.models[uid]) if row else ""


def launch_via_modal(app: XituiApp, pilot: Any, name: str, model_type: str = "LLM") -> Any:
    async def go() -> None:
        await until(pilot, lambda: app.dashboard.registrations, what="registrations")
        await pilot.press("l")
        await until(pilot, lambda: app.screen.__class__.__name__ == "LaunchModal", what="launch modal")
        from textual.widgets import Select

        app.screen.query_one("#registration", Select).value = f"{model_type}/{name}"
        await pilot.pause()
        # Enter on the Launch button (focused when the modal opens), not a click: the estimate landing meanwhile
        # may move the button under a click on a busy machine
        app.screen.query_one("#launch").focus()
        await pilot.press("enter")

    return go()


def test_launch_chat_stop_and_terminate(dash_server: ServerProcess) -> None:
    """Launch from the modal and watch the row reach ready; chat and see tokens arrive while the answer
    streams; Esc stops it and the server's in-flight count returns to 0; terminate with its confirmation."""
    client = Client(dash_server.url)

    async def test(app: XituiApp, pilot: Any) -> None:
        asked = time.monotonic()
        await launch_via_modal(app, pilot, "dash-llm")
        seen: dict[str, float] = {}

        def ready() -> bool:
            seen.setdefault(state_of(app, "dash-llm").split(" ")[0], time.monotonic())
            return state_of(app, "dash-llm") == "ready"

        await until(pilot, ready, what="ready row")
        # the row shows the launch while it lasts: it is "launching" first unless the launch was over before the
        # dashboard's first read after it (a fast launch on a busy machine)
        if "launching" not in seen:
            assert seen["ready"] - asked >= client.describe_model("dash-llm")["launch_seconds"]

        # chat: pieces reach the screen before the answer ends
        await pilot.press("c")
        pane = app.query_one(ChatPane)
        assert pane.uid == "dash-llm"
        pane.generation = {"max_tokens": 400, "temperature": 0}
        await type_text(pilot, "Tell me a long story about a dragon.")
        await pilot.press("enter")
        transcript = pane.query_one(Transcript)

        def written() -> str:
            return transcript.query(".answer").last().source

        await until(pilot, lambda: pane.generating and len(written()) >= 20, what="tokens while streaming")
        assert pane.generating  # still streaming: the pieces arrived before the end
        assert client.describe_model("dash-llm")["metrics"]["in_flight"] == 1
        await pilot.press("escape")
        await until(pilot, lambda: not pane.generating, what="stopped")
        await until(pilot, lambda: client.describe_model("dash-llm")["metrics"]["in_flight"] == 0, 10,
                    "in flight back to 0")
        assert "stopped" in str(transcript.figures.render())
        assert pane.last_stats is not None and pane.last_stats.tokens < 400
        # the pieces were drawn in paced frames (at most 20 a second, however fast they came), none lost
        stats = pane.last_stats
        assert 0 < transcript.frames <= min(stats.pieces, (stats.last - stats.first) * 20 + 2)
        assert written() == pane.last_answer

        # a full answer, with its statistics under it
        pane.generation = {"max_tokens": 8, "temperature": 0}
        for key in "Hello":
            await pilot.press(key)
        await pilot.press("enter")
        await until(pilot, lambda: not pane.generating and pane.last_stats and pane.last_stats.tokens, what="answer")
        assert "tokens/s" in str(transcript.figures.render())
        # the stopped answer stays in the conversation as far as it got, and the new turn follows it
        assert [m["role"] for m in pane.history] == ["user", "assistant", "user", "assistant"]
        await pilot.press("ctrl+o")  # copy the last answer
        assert app.clipboard == pane.last_answer and pane.last_answer
        await pilot.press("up")  # recall the last input
        assert pane.query_one("#chat-input").text == "Hello"
        await pilot.press("up")
        assert pane.query_one("#chat-input").text == "Tell me a long story about a dragon."
        await pilot.press("ctrl+l")  # clear
        await until(pilot, lambda: pane.history == [] and not pane.query("#chat-log Markdown"), what="cleared")

        # terminate, after saying yes
        app.query_one(ModelsTable).focus()
        await pilot.press("t")
        await until(pilot, lambda: app.screen.__class__.__name__ == "ConfirmModal", what="confirmation")
        await pilot.press("n")
        await until(pilot, lambda: app.screen.__class__.__name__ != "ConfirmModal", what="the question gone")
        assert "dash-llm" in client.list_models()
        await pilot.press("t")
        await until(pilot, lambda: app.screen.__class__.__name__ == "ConfirmModal", what="confirmation")
        await pilot.press("y")
        await until(pilot, lambda: "dash-llm" not in client.list_models(), what="terminated")
        await until(pilot, lambda: "dash-llm" not in app.query_one(ModelsTable)._rows, what="row gone")

    run(test, dash_server.url)


def test_a_killed_worker_comes_back_and_the_detail_line_says_so(dash_server: ServerProcess) -> None:
    from textual.widgets import Static

    client = Client(dash_server.url)
    client.launch_model(model_name="dash-llm", model_uid="dash-doomed")

    async def test(app: XituiApp, pilot: Any) -> None:
        await until(pilot, lambda: state_of(app, "dash-doomed") == "ready", what="ready row")
        pid = client.describe_model("dash-doomed")["pid"]
        os.kill(pid, signal.SIGKILL)
        await until(pilot, lambda: client.describe_model("dash-doomed")["pid"] != pid
                    and state_of(app, "dash-doomed") == "ready", what="the row ready again")
        app.query_one(ModelsTable).move_cursor(row=0)
        await until(pilot, lambda: "restarted once, last after SIGKILL, probably the out-of-memory killer"
                    in str(app.query_one("#model-detail", Static).render()), what="the restart in the detail line")

    try:
        run(test, dash_server.url)
    finally:
        client.terminate_model("dash-doomed")


def test_register_from_a_spec_file_then_unregister(dash_server: ServerProcess, small_gguf: Path,
                                                  tmp_path: Path) -> None:
    """A broken file shows its problems inline; a good one registers; unregistering asks first."""
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"model_name": "x", "model_specs": []}))
    good = tmp_path / "good.json"
    good.write_text(gguf_spec("dash-filed", small_gguf))
    client = Client(dash_server.url)

    async def test(app: XituiApp, pilot: Any) -> None:
        from textual.widgets import DataTable, Input, Static

        await pilot.press("f")
        await until(pilot, lambda: app.screen.__class__.__name__ == "SpecFileModal", what="spec file modal")
        path_input = app.screen.query_one("#path", Input)
        def problems() -> str:
            return str(app.screen.query_one("#problems", Static).render())

        path_input.value = str(broken)
        await until(pilot, lambda: "model_specs" in problems(), what="the broken file's problems")
        path_input.value = str(good)
        await until(pilot, lambda: problems().strip() == "", what="no problems in the good file")
        await pilot.click("#register")
        await until(pilot, lambda: any(r["model_name"] == "dash-filed" for r in app.dashboard.registrations),
                    what="registered row")
        assert client.get_model_registration("LLM", "dash-filed")["model_name"] == "dash-filed"

        await pilot.press("2")
        filter_input = app.query_one("#registration-filter", Input)
        filter_input.value = "dash-filed"
        table = app.query_one("#registration-table", DataTable)
        # not running: a request naming it loads it (as of the models read after the registrations read)
        await until(pilot, lambda: table.row_count == 1 and str(table.get_row_at(0)[2]) == "custom, on request",
                    what="the filtered table")
        app.query_one("#registration-table").focus()
        await pilot.press("u")
        await until(pilot, lambda: app.screen.__class__.__name__ == "ConfirmModal", what="confirmation")
        await pilot.press("y")
        await until(pilot, lambda: not any(r["model_name"] == "dash-filed" for r in app.dashboard.registrations),
                    what="unregistered")
        # builtins are refused with the reason, without asking
        filter_input.value = "llama-2-chat"
        await until(pilot, lambda: table.row_count == 1 and str(table.get_row_at(0)[0]) == "llama-2-chat",
                    what="the builtin's row")
        app.query_one("#registration-table").focus()
        await pilot.press("u")
        await until(pilot, lambda: any("builtins cannot be unregistered" in str(n.message)
                                       for n in app._notifications), what="the refusal")
        assert app.screen.__class__.__name__ != "ConfirmModal"

    run(test, dash_server.url)
    names = {r["model_name"] for r in client.list_model_registrations("LLM")}
    assert "dash-filed" not in names and "llama-2-chat" in names


def test_the_server_going_away_shows_a_banner_and_recovers(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    srv = ServerProcess(tmp_path / "a")
    port = srv.port

    async def test(app: XituiApp, pilot: Any) -> None:
        from textual.widgets import Static

        banner = app.query_one("#banner", Static)
        await until(pilot, lambda: app.dashboard.last_snapshot is not None, what="first read")
        assert not banner.has_class("-shown")
        srv.stop()
        await until(pilot, lambda: banner.has_class("-shown"), 15, "banner")
        assert "not answering" in str(banner.render())
        again = ServerProcess(tmp_path / "a", port=port)
        try:
            await until(pilot, lambda: not banner.has_class("-shown"), 15, "recovery")
        finally:
            again.stop()

    run(test, srv.url)


def test_log_view_follows_the_worker_and_themes_cycle_and_stick(dash_server: ServerProcess) -> None:
    """`g` shows the selected worker's log as it is written; Ctrl+T changes the theme and the config keeps it."""
    from xitui.core.config import load_config

    client = Client(dash_server.url)
    client.launch_model(model_name="dash-llm", model_uid="dash-logged")

    async def test(app: XituiApp, pilot: Any) -> None:
        from textual.widgets import Log

        await until(pilot, lambda: state_of(app, "dash-logged") == "ready", what="ready row")
        app.query_one(ModelsTable).focus()
        await pilot.press("g")
        await until(pilot, lambda: app.screen.__class__.__name__ == "LogView", what="log view")
        log = app.screen.query_one(Log)
        await until(pilot, lambda: log.line_count > 0, what="log lines")
        before = log.line_count
        with open(dash_server.home / "logs" / "dash-logged.log", "a") as fh:
            fh.write("a line written while the view is open\n")
        await until(pilot, lambda: any("written while the view is open" in line for line in log.lines),
                    what="the new line")
        assert log.line_count > before
        await pilot.press("escape")
        await pilot.press("v")  # the selected model's spec
        await until(pilot, lambda: app.screen.__class__.__name__ == "SpecView", what="spec view")
        assert "dash-llm" in app.screen.title_text
        await pilot.press("escape")
        assert app.theme == "xitui-dark"
        await pilot.press("ctrl+t")
        assert app.theme != "xitui-dark" and load_config().theme == app.theme_name

    try:
        run(test, dash_server.url)
    finally:
        client.terminate_model("dash-logged")


def test_launch_modal_estimate_replicas_ttl_and_restore(dash_server: ServerProcess) -> None:
    """The modal shows the memory estimate as the context changes (a launch that cannot fit turns the
    button into "Launch anyway"); replicas, idle ttl and restore reach the server; the row shows when the
    model unloads and the detail line its replicas."""
    from textual.widgets import Button, Checkbox, Input, Select, Static

    client = Client(dash_server.url)

    async def test(app: XituiApp, pilot: Any) -> None:
        await until(pilot, lambda: app.dashboard.registrations, what="registrations")
        await pilot.press("l")
        await until(pilot, lambda: app.screen.__class__.__name__ == "LaunchModal", what="launch modal")
        modal = app.screen
        modal.query_one("#registration", Select).value = "LLM/dash-llm"

        def estimate() -> str:
            return str(modal.query_one("#estimate", Static).render())

        await until(pilot, lambda: re.search(r"KV cache [\d.]+ MiB for 1024 tokens shared by 2 slots", estimate()),
                    what="the spec's estimate")
        assert estimate().startswith("fits: needs about")
        modal.query_one("#context", Input).value = "10000000"
        await until(pilot, lambda: estimate().startswith("does not fit"), what="a refusal")
        assert "the largest context that fits is" in estimate()
        assert str(modal.query_one("#launch", Button).label) == "Launch anyway"
        modal.query_one("#context", Input).value = "2048"
        await until(pilot, lambda: estimate().startswith("fits:"), what="fits again")
        assert str(modal.query_one("#launch", Button).label) == "Launch"
        modal.query_one("#replicas", Input).value = "2"
        modal.query_one("#ttl", Input).value = "5m"
        modal.query_one("#restore", Checkbox).value = True

        # the estimate for two replicas takes another line of the modal: click once it has landed, not where
        # the button was before (on a busy machine the click otherwise lands on the estimate's text)
        await until(pilot, lambda: estimate().startswith("fits: needs about") and "2 x (" in estimate(),
                    what="the estimate for two replicas")
        await pilot.pause()
        await pilot.click("#launch")
        await until(pilot, lambda: state_of(app, "dash-llm") == "ready", what="ready row")
        desc = client.describe_model("dash-llm")
        assert desc["replica"] == 2 and desc["ttl"] == 300 and desc["restore"] is True
        assert desc["context_length"] == 2048
        table = app.query_one(ModelsTable)
        await until(pilot, lambda: "unloads in" in table._rows["dash-llm"][-1], what="the unload time")
        table.move_cursor(row=0)
        await until(pilot, lambda: "2 replicas" in str(app.query_one("#model-detail", Static).render()),
                    what="the replicas in the detail line")
        assert "ttl 5m" in str(app.query_one("#model-detail", Static).render())
        client.terminate_model("dash-llm")

    run(test, dash_server.url)


def test_chat_pane_saves_lists_and_resumes_conversations(dash_server: ServerProcess, tmp_path: Path) -> None:
    """A conversation saved by `xitui chat` shows in the pane's session picker; resuming it shows its
    messages and the next answer goes to the same session; Ctrl+L starts a new one, saved on its own."""
    import subprocess

    from textual.widgets import Select

    from tests.conftest import run_env, xitui_cmd
    from xitui.core.saved_chats import ChatStore

    client = Client(dash_server.url)
    client.launch_model(model_name="dash-llm", model_uid="saver")
    said = subprocess.run([*xitui_cmd(), "chat", "-u", "saver", "-e", dash_server.url, "--max-tokens", "3",
                           "Remember the word lighthouse."], capture_output=True, text=True,
                          env=run_env(XITUI_HOME=str(tmp_path)), timeout=60)
    assert said.returncode == 0, said.stderr
    store = ChatStore(tmp_path)
    first = store.sessions()[0].id

    async def test(app: XituiApp, pilot: Any) -> None:
        pane = app.query_one(ChatPane)
        await until(pilot, lambda: "saver" in app.query_one(ModelsTable)._rows, what="the model's row")
        app.query_one(ModelsTable).move_cursor(row=list(app.query_one(ModelsTable)._rows).index("saver"))
        await pilot.press("c")
        picker = pane.query_one("#chat-session", Select)
        await until(pilot, lambda: any(v == first for _, v in picker._options), what="the saved session")
        picker.value = first
        await until(pilot, lambda: pane.session_id == first, what="the resumed session")
        assert pane.history[0] == {"role": "user", "content": "Remember the word lighthouse."}
        assert len(pane.history) == 2
        await pane.send("And now?")
        await until(pilot, lambda: not pane.generating and store.get(first).count == 4, what="the saved answer")
        assert store.get(first).messages[2].content == "And now?"
        await pilot.press("ctrl+l")
        assert pane.session_id is None and picker.value is Select.NULL
        await pane.send("A new topic.")
        await until(pilot, lambda: len(store.sessions()) == 2, what="a second session")
        assert store.sessions()[0].title == "A new topic." and store.get(first).count == 4

    async def main() -> None:
        app = make_app(Client(dash_server.url), dash_server.url, "dark", refresh=0.3, chat_store=store,
                       generation={"max_tokens": 8})
        async with app.run_test(size=(120, 40)) as pilot:
            await test(app, pilot)

    asyncio.run(main())
    client.terminate_model("saver")


def test_the_demo_proposes_the_bundled_chat_model_and_it_chats(dash_server: ServerProcess) -> None:
    """`l` with nothing chosen proposes demo-smollm2-135m; launched from the modal, it answers a question."""
    client = Client(dash_server.url)

    async def test(app: XituiApp, pilot: Any) -> None:
        from textual.widgets import Select

        await until(pilot, lambda: app.dashboard.registrations, what="registrations")
        await pilot.press("l")
        await until(pilot, lambda: app.screen.__class__.__name__ == "LaunchModal", what="launch modal")
        assert app.screen.query_one("#registration", Select).value == "LLM/demo-smollm2-135m"
        await pilot.click("#launch")
        await until(pilot, lambda: state_of(app, "demo-smollm2-135m") == "ready", 60, "ready row")
        await pilot.press("c")
        pane = app.query_one(ChatPane)
        assert pane.uid == "demo-smollm2-135m"
        pane.generation = {"max_tokens": 32, "temperature": 0}
        await type_text(pilot, "What is the capital of France?")
        await pilot.press("enter")
        await until(pilot, lambda: not pane.generating and pane.last_answer, 60, "answer")
        assert "Paris" in pane.last_answer

    try:
        run(test, dash_server.url)
    finally:
        if "demo-smollm2-135m" in client.list_models():
            client.terminate_model("demo-smollm2-135m")


def test_the_cli_and_the_pane_count_an_answer_the_same(dash_server: ServerProcess, tmp_path: Path) -> None:
    """An answer asked from `xitui chat` and one asked from the pane: both record and show the server's own
    count of the tokens it generated for them (its metrics say how many that was)."""
    import subprocess

    from tests.conftest import run_env, xitui_cmd
    from xitui.core.saved_chats import ChatStore

    client = Client(dash_server.url)
    client.launch_model(model_name="dash-llm", model_uid="counter")

    def generated() -> int:
        return client.describe_model("counter")["metrics"]["tokens_generated"]

    before = generated()
    said = subprocess.run([*xitui_cmd(), "chat", "-u", "counter", "-e", dash_server.url, "--max-tokens", "12",
                           "Name three colours."], capture_output=True, text=True,
                          env=run_env(XITUI_HOME=str(tmp_path)), timeout=60)
    assert said.returncode == 0, said.stderr
    by_cli = generated() - before
    store = ChatStore(tmp_path)
    assert store.get(store.sessions()[0].id).messages[-1].tokens == by_cli

    async def test(app: XituiApp, pilot: Any) -> None:
        pane = app.query_one(ChatPane)
        await until(pilot, lambda: "counter" in pane.models, what="the model offered")
        pane.choose("counter")
        start = generated()
        await pane.send("Name three colours.")
        await until(pilot, lambda: not pane.generating and pane.last_stats, what="the answer")
        by_pane = generated() - start
        assert pane.last_stats.tokens == by_pane > 0
        # the wait for the first token counts from the request: at least what the server measured for it
        assert pane.last_stats.ttft >= client.describe_model("counter")["metrics"]["last_ttft"] > 0
        assert f"· {by_pane} tokens" in str(pane.query_one(Transcript).figures.render())
        await until(pilot, lambda: len(store.sessions()) == 2, what="the pane's session saved")
        await until(pilot, lambda: store.get(store.sessions()[0].id).count == 2, what="its answer saved")
        assert store.get(store.sessions()[0].id).messages[-1].tokens == by_pane

    async def main() -> None:
        app = make_app(Client(dash_server.url), dash_server.url, "dark", refresh=0.3, chat_store=store,
                       generation={"max_tokens": 12})
        async with app.run_test(size=(120, 40)) as pilot:
            await test(app, pilot)

    try:
        asyncio.run(main())
    finally:
        client.terminate_model("counter")


def test_a_rerank_model_launched_from_the_modal_ranks_passages_in_the_pane(dash_server: ServerProcess) -> None:
    """A rerank registration launches from the modal; in the pane a query and passages (one per line) come
    back ranked, the passage that answers the query first."""
    client = Client(dash_server.url)
    spec = {"version": 2, "model_name": "dash-rerank", "type": "normal", "max_tokens": 96, "language": ["en"],
            "model_specs": [{"model_format": "pytorch", "model_uri": str(reranker_dir()), "quantization": "none"}]}
    client.register_model("rerank", json.dumps(spec))
    passages = ["The old bridge in Prague was built in 1357.", "The fox lives in the forest and eats berries.",
                "Bread is made of flour, water and salt."]

    async def test(app: XituiApp, pilot: Any) -> None:
        await launch_via_modal(app, pilot, "dash-rerank", "rerank")
        await until(pilot, lambda: state_of(app, "dash-rerank") == "ready", 120, "ready row")
        app.query_one(ModelsTable).focus()
        table = app.query_one(ModelsTable)
        table.move_cursor(row=table.get_row_index("dash-rerank"))
        await pilot.press("c")
        pane = app.query_one(ChatPane)
        await until(pilot, lambda: pane.mode == "rerank", what="rerank mode")
        assert not pane.query_one("#chat-log").display and pane.query_one("#rerank-box").display
        assert app.focused is pane.query_one("#rerank-query")
        pane.query_one("#rerank-documents").text = "\n".join(passages) + "\n\n"
        await type_text(pilot, "Where does the fox live?")
        await pilot.press("enter")
        status = pane.query_one("#rerank-status")
        await until(pilot, lambda: "passages in" in str(status.render()), 30, "the ranking")
        assert "3 passages" in str(status.render()) and "tokens" in str(status.render())
        result = pane.query_one("#rerank-result")
        rows = [" ".join(result.render_line(y).text.split()) for y in range(result.size.height)]
        ranked = [row for row in rows if row[:1].isdigit()]
        assert len(ranked) == 3 and ranked[0].startswith("1 ") and "The fox lives in the forest" in ranked[0], rows

        # its registration says what it does: ranks, with the longest input it reads
        from textual.widgets import DataTable, Input

        app.query_one(ModelsTable).focus()
        await pilot.press("2")
        app.query_one("#registration-filter", Input).value = "dash-rerank"
        table = app.query_one("#registration-table", DataTable)
        await until(pilot, lambda: table.row_count == 1 and str(table.get_row_at(0)[0]) == "dash-rerank",
                    what="the filtered table")
        row = [str(cell) for cell in table.get_row_at(0)]
        assert row[:2] == ["dash-rerank", "rerank"] and row[4] == "ranks, 96 tokens"

    run(test, dash_server.url)
    client.terminate_model("dash-rerank")
    client.unregister_model("rerank", "dash-rerank")


def test_the_pane_offers_a_model_that_loads_on_request_and_its_first_answer_loads_it(
        dash_server: ServerProcess) -> None:
    """A registered model that is not running is in the pane's picker as loading on request; the first
    message loads it and is answered, and the conversation goes on once the model runs."""
    from textual.widgets import Select

    client = Client(dash_server.url)

    async def test(app: XituiApp, pilot: Any) -> None:
        picker = app.query_one("#chat-model", Select)

        def offered() -> dict[str, str]:
            return {str(value): str(label) for label, value in picker._options if value is not Select.NULL}

        await until(pilot, lambda: offered().get("dash-llm") == "dash-llm (LLM, loads on request)",
                    what="the loadable model in the picker")
        assert "dash-llm" not in client.list_models()
        from textual.widgets import Static

        detail = str(app.query_one("#model-detail", Static).render())
        assert "no model is running" in detail and "pick one in the chat pane: the first message loads it" in detail
        pane = app.query_one(ChatPane)
        pane.generation = {"max_tokens": 8, "temperature": 0}
        picker.value = "dash-llm"
        await until(pilot, lambda: pane.uid == "dash-llm" and pane.mode == "chat", what="chosen, as a chat model")
        await until(pilot, lambda: app.focused is pane.query_one("#chat-input"), what="the keys on the input")
        await type_text(pilot, "Hello")
        await pilot.press("enter")

        def answered() -> bool:
            assert pane.uid == "dash-llm", "the choice was dropped while the model loaded"
            return bool(not pane.generating and pane.last_stats and pane.last_stats.tokens)

        await until(pilot, answered, 60, "the first answer")
        assert client.list_models()["dash-llm"]["state"] == "ready"
        await until(pilot, lambda: offered().get("dash-llm") == "dash-llm (LLM)", what="offered as running")
        assert pane.uid == "dash-llm" and [m["role"] for m in pane.history] == ["user", "assistant"]

    run(test, dash_server.url)


def test_reads_pause_while_a_modal_covers_the_dashboard(dash_server: ServerProcess) -> None:
    """Nobody sees the table under a modal: the server is not read until the dashboard shows again."""

    async def test(app: XituiApp, pilot: Any) -> None:
        dashboard = app.dashboard
        await until(pilot, lambda: dashboard.reads >= 2, what="reads")
        await pilot.press("f")
        await until(pilot, lambda: app.screen.__class__.__name__ == "SpecFileModal", what="a modal")
        await pilot.pause(0.5)  # a read already under way may still land
        covered = dashboard.reads
        await pilot.pause(1.5)  # five refresh periods
        assert dashboard.reads == covered
        await pilot.press("escape")
        await until(pilot, lambda: dashboard.reads > covered, 5, "reads again")

    run(test, dash_server.url)


def test_a_thinking_models_reasoning_shows_dim_and_folds_away(dash_server: ServerProcess) -> None:
    """The reasoning streams into a fold of its own above the answer, and folds when the answer ends.
    (A grammar makes the small model write a thought, then an answer.)"""
    from textual.widgets import Static

    from tests.server.test_tools import thinker_spec

    client = Client(dash_server.url)
    client.register_model("LLM", thinker_spec("dash-thinker"))
    client.launch_model(model_name="dash-thinker")

    async def test(app: XituiApp, pilot: Any) -> None:
        pane = app.query_one(ChatPane)
        await until(pilot, lambda: "dash-thinker" in pane.models, what="the model offered")
        pane.choose("dash-thinker")
        pane.generation = {"grammar": 'root ::= [a-z ]{3,30} "</think>" [A-Za-z ]{3,30}', "max_tokens": 80,
                           "temperature": 0}
        await pane.send("What is the weather in Paris?")
        transcript = pane.query_one(Transcript)
        await until(pilot, lambda: not pane.generating and pane.last_stats, what="the answer")
        # the pieces are drawn at the frames' pace (a busy machine draws the last ones after the answer ends)
        await until(pilot, lambda: transcript.thought is not None and transcript.thought.collapsed,
                    what="the thought drawn and folded")
        assert transcript.thought is not None
        thought = str(transcript.thought.query_one(".reasoning", Static).render())
        assert thought.strip() and "think>" not in thought
        assert pane.last_answer and "think>" not in pane.last_answer

    try:
        run(test, dash_server.url)
    finally:
        client.terminate_model("dash-thinker")
        client.unregister_model("LLM", "dash-thinker")


def test_k_checks_the_selected_registration_and_registers_its_fix(dash_server: ServerProcess,
                                                                   small_gguf: Path) -> None:
    """`k` in the Registrations tab runs `xitui check` live: a spec declaring more context than SmolLM2's file
    is flagged with the file's length as the fix, the fix button registers it (persisted as it was), and the
    model launched for the check is let go."""
    from textual.widgets import Button, DataTable, Input

    client = Client(dash_server.url)
    spec = json.loads(gguf_spec("dash-too-long", small_gguf, version=2))
    spec.update(model_ability=["chat"], context_length=100000)
    client.register_model("LLM", json.dumps(spec), persist=True)

    async def test(app: XituiApp, pilot: Any) -> None:
        await pilot.press("2")
        app.query_one("#registration-filter", Input).value = "dash-too-long"
        table = app.query_one("#registration-table", DataTable)
        await until(pilot, lambda: table.row_count == 1, what="the filtered table")
        table.focus()
        await pilot.press("k")
        await until(pilot, lambda: app.screen.__class__.__name__ == "CheckView", what="the check view")
        view = app.screen
        await until(pilot, lambda: view.report is not None, 120, "the check's rows")
        shown = view.query_one("#check-rows", DataTable)
        rows = {str(r[0]): [str(c) for c in r] for r in map(shown.get_row_at, range(shown.row_count))}
        assert rows["context length"][1] == "FAIL" and rows["context length"][4] == "context_length=8192", rows
        assert rows["chat format"][1] == "ok" and rows["json_schema"][1] == "ok", rows
        assert "dash-too-long" not in json.dumps(client.list_models())  # launched for the check, then let go
        assert not view.query_one("#fix", Button).disabled
        await pilot.click("#fix")
        await until(pilot, lambda: view.fixed, 30, "the corrected spec registered")
        await pilot.press("escape")
        await until(pilot, lambda: app.screen.__class__.__name__ == "DashboardScreen", what="the dashboard again")

    try:
        run(test, dash_server.url)
        fixed = client.get_model_registration("LLM", "dash-too-long")
        assert fixed["context_length"] == 8192 and fixed.get("persisted", True)
    finally:
        client.unregister_model("LLM", "dash-too-long")


def test_image_in_the_chat_pane_goes_with_the_next_message(dash_server: ServerProcess, tmp_path: Path) -> None:
    """`/image PATH` typed in the pane's input attaches an image; the next message carries it to a vision
    model, whose answer is the one that image gets over HTTP; a missing file is one line, nothing sent."""
    from tests.server.test_vision import answer, data_url, png, vlm_spec
    from xitui.tui.widgets.prompt_input import PromptInput

    client = Client(dash_server.url)
    client.register_model("LLM", vlm_spec("dash-vlm"))
    client.launch_model(model_name="dash-vlm")
    photo = tmp_path / "photo.png"
    photo.write_bytes(png(seed=8))
    expected, _ = answer(dash_server, "dash-vlm", data_url(photo.read_bytes()))

    async def test(app: XituiApp, pilot: Any) -> None:
        pane = app.query_one(ChatPane)
        await until(pilot, lambda: "dash-vlm" in pane.models, what="the model offered")
        pane.choose("dash-vlm")
        pane.generation = {"max_tokens": 8, "temperature": 0}
        box = pane.query_one(PromptInput)
        box.focus()
        box.text = f"/image {tmp_path / 'missing.png'}"
        await pilot.press("enter")
        await until(pilot, lambda: any("missing.png" in str(n.message) for n in app._notifications),
                    what="the refusal")
        assert not pane.conversation.attached and not pane.generating
        box.load_text(f"/image {tmp_path}/pho")  # Tab completes the path
        box.move_cursor(box.document.end)
        await pilot.press("tab")
        assert box.text == f"/image {photo}"
        await pilot.press("enter")
        await until(pilot, lambda: pane.conversation.attached, what="attached")
        box.text = "What is in the picture?"
        await pilot.press("enter")
        await until(pilot, lambda: not pane.generating and pane.last_stats, 60, "the answer")
        assert pane.last_answer.strip() == expected.strip()
        assert "[images: photo.png]" in str(pane.query_one(Transcript).query(".user").last().render())
        assert len(pane.query_one(Transcript).query(".picture")) == 1  # the picture, drawn under the question
        assert not pane.conversation.attached  # sent with that message only
        assert isinstance(pane.history[0]["content"], list)  # the next turn sends it again

    try:
        run(test, dash_server.url)
    finally:
        client.terminate_model("dash-vlm")
        client.unregister_model("LLM", "dash-vlm")
