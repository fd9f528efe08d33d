"""The dashboard's chat pane, driven by Pilot against a real server whose model is the scripted engine (no
weights: the quick tier). Answers stream into the transcript before they end, Esc stops one and the server
cancels it, reasoning folds away, a model's error is one line under the answer, the conversation keeps its
turns. The same on real weights: test_dashboard_pilot.py (slow)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.widgets import Static

from tests.support import servers
from tests.support.models import launched
from tests.support.pilot import until
from tests.support.specs import scripted_spec
from xitui.client import Client
from xitui.tui.dashboard_app import XituiApp, make_app
from xitui.tui.widgets.chat import ChatPane
from xitui.tui.widgets.transcript import Transcript

#: Rules match anywhere in the conversation so far: the greeting, asked after another turn, comes first.
RULES = [
    {"match": "user\nHi", "reply": "Hello there, friend."},
    {"match": "long story", "reply": " and then", "repeat": 3000, "delay": 0.003},
    {"match": "weather", "reply": "<think>Paris is often sunny in June.</think>It is sunny."},
    {"match": "boom", "reply": "Half an", "error": "scripted failure", "status": 500},
    {"reply": "Nothing to say."},
]


@pytest.fixture(scope="module")
def pane_model(scripted: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = scripted_spec("pane-model", tmp_path_factory.mktemp("pane-model"), RULES,
                         abilities=["chat", "reasoning"])
    with launched(Client(scripted.url), "pane-model", spec, model_engine="scripted") as uid:
        yield uid


def run(test: Callable[[XituiApp, Any, ChatPane], Any], url: str, uid: str) -> None:
    """Run `test(app, pilot, pane)` in a live dashboard on `url`, its chat pane on `uid`."""

    async def main() -> None:
        app = make_app(Client(url), url, "dark", refresh=0.3)
        async with app.run_test(size=(120, 40)) as pilot:
            pane = app.query_one(ChatPane)
            await until(pilot, lambda: uid in pane.models, what="the model offered")
            pane.choose(uid)
            await pilot.press("c")  # the chat pane's key: its input takes the keys
            await test(app, pilot, pane)

    asyncio.run(main())


async def answered(app: XituiApp, pilot: Any, pane: ChatPane) -> None:
    """The answer's worker done and its Answered message handled."""
    await app.workers.wait_for_complete([w for w in app.workers if w.group == "chat"])
    while pane.generating:
        await pilot.pause()


async def ask(pilot: Any, text: str) -> None:
    """Type `text` into the pane's input, key by key, and press Enter."""
    for key in text:
        await pilot.press(key if key != " " else "space")
    await pilot.press("enter")


def test_an_answer_streams_in_esc_stops_it_and_the_next_one_follows(scripted, pane_model):
    client = Client(scripted.url)

    async def test(app: XituiApp, pilot: Any, pane: ChatPane) -> None:
        transcript = pane.query_one(Transcript)
        pane.generation = {"max_tokens": 2500}
        await ask(pilot, "Tell me a long story.")
        await until(pilot, lambda: pane.generating and len(transcript.query(".answer").last().source) >= 40,
                    what="pieces on screen while the answer streams")
        assert client.describe_model(pane_model)["metrics"]["in_flight"] == 1
        await pilot.press("escape")
        await answered(app, pilot, pane)
        assert "stopped" in str(transcript.figures.render())
        assert pane.last_stats is not None and 0 < pane.last_stats.tokens < 2500
        assert pane.last_answer.startswith(" and then and then") and pane.last_answer == \
            transcript.query(".answer").last().source
        # the server cancels the stopped request: its slot is free again
        await until(pilot, lambda: client.describe_model(pane_model)["metrics"]["in_flight"] == 0,
                    what="the server's in-flight count back to 0")

        await ask(pilot, "Hi")
        await answered(app, pilot, pane)
        assert pane.last_answer == "Hello there, friend." and pane.last_stats.tokens == 3
        assert "tokens/s" in str(transcript.figures.render())
        assert [m["role"] for m in pane.history] == ["user", "assistant", "user", "assistant"]
        await pilot.press("ctrl+o")  # copy the last answer
        assert app.clipboard == "Hello there, friend."
        await pilot.press("up")  # recall the last input, then the one before
        assert pane.query_one("#chat-input").text == "Hi"
        await pilot.press("up")
        assert pane.query_one("#chat-input").text == "Tell me a long story."
        await pilot.press("ctrl+l")  # a new conversation
        await pilot.pause()
        assert pane.history == [] and not transcript.query(".answer")

    run(test, scripted.url, pane_model)


def test_reasoning_streams_into_a_fold_that_closes_when_the_answer_ends(scripted, pane_model):
    async def test(app: XituiApp, pilot: Any, pane: ChatPane) -> None:
        await ask(pilot, "What is the weather in Paris?")
        await answered(app, pilot, pane)
        transcript = pane.query_one(Transcript)
        assert transcript.thought is not None and transcript.thought.collapsed
        assert str(transcript.thought.query_one(".reasoning", Static).render()) == "Paris is often sunny in June."
        assert pane.last_answer == "It is sunny."

    run(test, scripted.url, pane_model)


def test_a_models_error_is_one_line_under_what_it_wrote_and_the_pane_goes_on(scripted, pane_model):
    async def test(app: XituiApp, pilot: Any, pane: ChatPane) -> None:
        await ask(pilot, "boom")
        await answered(app, pilot, pane)
        transcript = pane.query_one(Transcript)
        figures = str(transcript.figures.render())
        assert "error: " in figures and "scripted failure" in figures and "\n" not in figures
        await ask(pilot, "Hi again")
        await answered(app, pilot, pane)
        assert pane.last_answer == "Hello there, friend."

    run(test, scripted.url, pane_model)
