"""Which models run (server/runtime/scheduler.py), with a clock the test moves and models that are plain objects:
ttl, max_loaded's least recently used choice, one load for many requests, and restores, in milliseconds."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

import pytest

from xitui.core.errors import LaunchError, NotFoundError, XituiError
from xitui.core.machine.estimate import InsufficientMemoryError
from xitui.server.runtime.launch_request import LaunchBody
from xitui.server.runtime.scheduler import AllBusyError, Scheduler


class Clock:
    """Wall-clock seconds that pass only when the test says so."""

    def __init__(self, now: float = 1_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeModel:
    """A running model as the scheduler sees it. Unlike server/model.Model, `idle_since` answers the last
    finish even while requests run, so a busy model stays loaded only if the scheduler itself checks."""

    uid: str
    ttl: float | None = None
    state: str = "launching"
    settling: asyncio.Task[None] | None = None
    busy: int = 0
    last_used: float = 0.0
    placeholder: bool = False
    request: dict[str, Any] = field(default_factory=dict)

    def in_flight(self) -> int:
        return self.busy

    def idle_since(self) -> float | None:
        return self.last_used


class FakeWorkers:
    """Starts and stops FakeModels the way the Supervisor does worker processes: a launch lists its model
    at once, loads for `load_seconds` of the clock, and lists it ready; stops are recorded."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self.scheduler: Scheduler[FakeModel] | None = None
        self.launched: list[LaunchBody] = []
        self.keep_failed: list[bool] = []
        self.stopped: list[tuple[str, str]] = []
        self.load_seconds = 0.0
        #: While set, launches wait for it once their model is listed.
        self.gate: asyncio.Event | None = None
        #: Set by each launch once its model is listed.
        self.entered = asyncio.Event()
        #: uid -> errors its next launches raise before anything is listed (no fit, a registration gone).
        self.refuse: dict[str, list[XituiError]] = {}
        #: uid -> the error its launch raises after loading (a worker that failed to load the model).
        self.fail: dict[str, XituiError] = {}

    @property
    def models(self) -> dict[str, FakeModel]:
        assert self.scheduler is not None
        return self.scheduler.models

    async def launch(self, body: LaunchBody, *, keep_failed: bool = False) -> str:
        uid = body.model_uid or body.model_name
        self.launched.append(body)
        self.keep_failed.append(keep_failed)
        if self.refuse.get(uid):
            raise self.refuse[uid].pop(0)
        model = FakeModel(uid, ttl=body.ttl_seconds(None), request=body.request())
        self.models[uid] = model
        self.entered.set()
        if self.gate is not None:
            await self.gate.wait()
        self.clock.now += self.load_seconds
        if uid in self.fail:
            model.state = "error"
            if not keep_failed:
                del self.models[uid]
            raise self.fail[uid]
        model.state, model.last_used = "ready", self.clock.now
        return uid

    async def unload(self, model: FakeModel, why: str) -> None:
        self.stopped.append((model.uid, why))

    def failed_model(self, uid: str, request: dict[str, Any], reason: str) -> FakeModel:
        return FakeModel(uid, state="error", placeholder=True, request=request)


def setup(max_loaded: int = 0, max_loading: int = 1) -> tuple[Scheduler[FakeModel], FakeWorkers, Clock]:
    clock = Clock()
    workers = FakeWorkers(clock)
    scheduler = Scheduler(workers, clock=clock, max_loaded=max_loaded, max_loading=max_loading)
    workers.scheduler = scheduler
    return scheduler, workers, clock


def running(scheduler: Scheduler[FakeModel], uid: str, last_used: float, ttl: float | None = None,
            busy: int = 0) -> FakeModel:
    model = FakeModel(uid, ttl=ttl, state="ready", busy=busy, last_used=last_used)
    scheduler.models[uid] = model
    return model


# --- ttl -----------------------------------------------------------------------------------------------


def test_an_idle_model_is_unloaded_when_its_ttl_runs_out_and_a_404_says_why() -> None:
    async def main() -> None:
        scheduler, workers, clock = setup()
        running(scheduler, "sleepy", last_used=clock.now, ttl=60)
        running(scheduler, "kept", last_used=clock.now - 10_000, ttl=None)  # no ttl: never
        clock.now += 59.9
        assert await scheduler.unload_idle() == [] and workers.stopped == []
        clock.now += 0.1
        assert await scheduler.unload_idle() == ["sleepy"]
        why = "was unloaded after 1m idle (its ttl is 1m)"
        assert workers.stopped == [("sleepy", why)] and list(scheduler.models) == ["kept"]
        assert scheduler.unloads["idle"] == 1
        with pytest.raises(NotFoundError, match=re.escape(f"model 'sleepy' {why}; launch it again")):
            scheduler.get("sleepy")
        assert await scheduler.unload_idle() == []  # stopped once

    asyncio.run(main())


def test_a_busy_or_loading_model_outlives_its_ttl_and_idle_time_starts_again_after_a_request() -> None:
    async def main() -> None:
        scheduler, workers, clock = setup()
        busy = running(scheduler, "busy", last_used=clock.now, ttl=0, busy=1)
        loading = running(scheduler, "loading", last_used=clock.now, ttl=0)
        loading.state = "launching"
        clock.now += 3600
        assert await scheduler.unload_idle() == []
        busy.busy, busy.last_used = 0, clock.now  # its request ends now
        loading.state = "ready"
        loading.ttl = 30
        loading.last_used = clock.now
        clock.now += 29
        assert await scheduler.unload_idle() == ["busy"]  # ttl 0: once idle
        assert list(scheduler.models) == ["loading"]
        clock.now += 1
        assert await scheduler.unload_idle() == ["loading"]
        assert [uid for uid, _ in workers.stopped] == ["busy", "loading"]

    asyncio.run(main())


# --- max_loaded ------------------------------------------------------------------------------------------


def test_max_loaded_unloads_the_least_recently_used_idle_model_to_load_another() -> None:
    async def main() -> None:
        scheduler, workers, clock = setup(max_loaded=2)
        running(scheduler, "recent", last_used=clock.now - 5)
        running(scheduler, "oldest", last_used=clock.now - 50)
        assert await scheduler.load("new", {"model_name": "new"}) == "new"
        assert workers.stopped == [("oldest", "was unloaded to make room for new (server.max_loaded)")]
        assert set(scheduler.models) == {"recent", "new"} and scheduler.models["new"].state == "ready"
        assert scheduler.unloads["max_loaded"] == 1
        with pytest.raises(NotFoundError, match="'oldest' was unloaded to make room for new"):
            scheduler.get("oldest")

    asyncio.run(main())


def test_max_loaded_never_unloads_a_busy_model_and_with_all_busy_loads_nothing() -> None:
    async def main() -> None:
        scheduler, workers, clock = setup(max_loaded=2)
        serving = running(scheduler, "serving", last_used=clock.now - 500, busy=1)
        running(scheduler, "idle", last_used=clock.now - 5)
        assert await scheduler.load("new", {"model_name": "new"}) == "new"
        assert [uid for uid, _ in workers.stopped] == ["idle"]  # the older one is serving a request
        scheduler.models["new"].busy = 1
        with pytest.raises(AllBusyError, match="2 models run .server.max_loaded. and none is idle: third") as caught:
            await scheduler.load("third", {"model_name": "third"})
        assert caught.value.status_code == 503
        assert [b.model_name for b in workers.launched] == ["new"]
        assert set(scheduler.models) == {"serving", "new"} and serving.state == "ready"

    asyncio.run(main())


def test_a_load_that_does_not_fit_unloads_an_idle_model_and_tries_again_only_under_max_loaded() -> None:
    async def main() -> None:
        scheduler, workers, clock = setup(max_loaded=3)
        running(scheduler, "idle", last_used=clock.now)
        workers.refuse["big"] = [InsufficientMemoryError("big needs about 9 GiB")]
        assert await scheduler.load("big", {"model_name": "big"}) == "big"
        assert [uid for uid, _ in workers.stopped] == ["idle"] and len(workers.launched) == 2

        unlimited, workers, clock = setup(max_loaded=0)
        running(unlimited, "idle", last_used=clock.now)
        workers.refuse["big"] = [InsufficientMemoryError("big needs about 9 GiB")]
        with pytest.raises(InsufficientMemoryError, match="needs about 9 GiB"):
            await unlimited.load("big", {"model_name": "big"})
        assert workers.stopped == [] and list(unlimited.models) == ["idle"]

    asyncio.run(main())


# --- one load for many requests ------------------------------------------------------------------------


def test_concurrent_requests_naming_one_model_share_one_load() -> None:
    async def main() -> None:
        scheduler, workers, clock = setup()
        workers.gate = asyncio.Event()
        request = {"model_name": "shared", "ttl": 5}
        waiters = [asyncio.ensure_future(scheduler.load("shared", request)) for _ in range(5)]
        await workers.entered.wait()
        assert scheduler.load_queue.listing("shared") == {"state": "loading"}
        workers.gate.set()
        assert await asyncio.gather(*waiters) == ["shared"] * 5
        assert len(workers.launched) == 1
        # once unloaded, the next request loads it again rather than reusing the finished load
        clock.now += 5
        assert await scheduler.unload_idle() == ["shared"]
        assert await scheduler.load("shared", request) == "shared" and len(workers.launched) == 2

    asyncio.run(main())


def test_a_failing_load_is_seen_by_every_request_waiting_for_it_and_the_next_one_tries_again() -> None:
    async def main() -> None:
        scheduler, workers, _ = setup()
        workers.gate = asyncio.Event()
        workers.fail["broken"] = LaunchError("could not launch broken: the worker died loading it")
        waiters = [asyncio.ensure_future(scheduler.load("broken", {"model_name": "broken"})) for _ in range(3)]
        await workers.entered.wait()
        workers.gate.set()
        errors = await asyncio.gather(*waiters, return_exceptions=True)
        assert [str(e) for e in errors] == ["could not launch broken: the worker died loading it"] * 3
        assert all(isinstance(e, LaunchError) for e in errors)
        assert len(workers.launched) == 1 and "broken" not in scheduler.models
        del workers.fail["broken"]
        assert await scheduler.load("broken", {"model_name": "broken"}) == "broken"
        assert len(workers.launched) == 2

    asyncio.run(main())


def test_loads_of_different_models_take_turns_and_show_their_place() -> None:
    async def main() -> None:
        scheduler, workers, _ = setup(max_loading=1)
        workers.gate = asyncio.Event()
        first = asyncio.ensure_future(scheduler.load("first", {"model_name": "first"}))
        second = asyncio.ensure_future(scheduler.load("second", {"model_name": "second"}))
        await workers.entered.wait()
        await asyncio.sleep(0)  # the second load reaches the line
        assert scheduler.load_queue.listing("second") == {"state": "queued to load", "load_position": 1}
        assert [b.model_name for b in workers.launched] == ["first"]
        workers.gate.set()
        assert await asyncio.gather(first, second) == ["first", "second"]

    asyncio.run(main())


def test_remembered_settings_that_no_longer_validate_are_refused_before_loading() -> None:
    async def main() -> None:
        scheduler, workers, _ = setup()
        with pytest.raises(LaunchError, match="the remembered launch settings are refused: replica"):
            await scheduler.load("odd", {"model_name": "odd", "replica": 0})
        assert workers.launched == []

    asyncio.run(main())


# --- restore -----------------------------------------------------------------------------------------------


def test_restore_relaunches_marked_models_in_turn_and_lists_each_that_cannot_come_back() -> None:
    async def main() -> None:
        scheduler, workers, _ = setup()
        workers.load_seconds = 2.5
        workers.gate = asyncio.Event()
        workers.refuse["gone"] = [LaunchError("model 'gone' is not registered")]
        workers.fail["broken"] = LaunchError("could not launch broken: the worker died loading it")
        marked: list[tuple[str, dict[str, Any]]] = [
            ("back-1", {"model_name": "back", "model_uid": "back-1", "ttl": "1h"}),
            ("gone", {"model_name": "gone"}),
            ("broken", {"model_name": "broken"}),
            ("odd", {"model_name": "odd", "replica": 0}),
        ]
        restoring = asyncio.ensure_future(scheduler.restore(marked))
        await workers.entered.wait()
        assert [e["result"] for e in scheduler.restored] == ["pending"] * 4  # one at a time, first in line
        assert [b.model_uid or b.model_name for b in workers.launched] == ["back-1"]
        workers.gate.set()
        entries = await restoring

        assert entries == scheduler.restored
        assert entries[0] == {"model_uid": "back-1", "result": "ready", "seconds": 2.5}
        assert entries[1] == {"model_uid": "gone", "result": "error", "error": "model 'gone' is not registered"}
        assert entries[2]["result"] == "error" and "the worker died loading it" in entries[2]["error"]
        assert entries[3]["result"] == "error"
        assert entries[3]["error"].startswith("the remembered launch settings are refused: replica")
        assert all(b.restore for b in workers.launched) and all(workers.keep_failed)
        assert [b.model_uid or b.model_name for b in workers.launched] == ["back-1", "gone", "broken"]

        models = scheduler.models
        assert models["back-1"].state == "ready" and models["back-1"].ttl == 3600
        # each that failed stays listed in error: the launch's own model, or one standing in for it
        assert models["broken"].state == "error" and not models["broken"].placeholder
        assert models["gone"].placeholder and models["gone"].request == {"model_name": "gone"}
        assert models["odd"].placeholder and models["odd"].state == "error"

    asyncio.run(main())
