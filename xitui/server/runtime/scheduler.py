"""Which models run: the policy apart from the processes (as ollama's server/sched.go keeps it).

A model idle past its time to live is unloaded; a load on request with server.max_loaded models running first
unloads the one used longest ago among the idle ones (never a busy one); requests naming one model that is
not running share one load, and see its failure if it fails; the models marked to come back are relaunched
one after the other when the server starts. How a model starts and stops is a `Spawner` (the Supervisor's
worker processes; a test's fakes), and the time is a clock passed in, so all of this is tested in
milliseconds (tests/server/test_scheduler.py).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from pydantic import ValidationError

from xitui.core.errors import LaunchError, NotFoundError, XituiError
from xitui.core.machine.estimate import InsufficientMemoryError
from xitui.core.units import human_duration
from xitui.server.edge.request_body import problems_text
from xitui.server.runtime.launch_request import LaunchBody
from xitui.server.runtime.load_queue import DEFAULT_MAX_LOADING, LoadQueue

log = logging.getLogger("xitui.supervisor")

#: How often idle models are looked at (seconds).
IDLE_CHECK = 1.0


class UidInUseError(XituiError):
    """A launch names a uid that a running (or launching) model holds."""

    status_code = 409


class AllBusyError(XituiError):
    """A model to load on request, with server.max_loaded models running and every one of them busy."""

    status_code = 503


class Runner(Protocol):
    """What the scheduler reads of a running model (server/model.Model; a test's fake)."""

    uid: str
    #: Idle seconds before it is unloaded; None: never.
    ttl: float | None
    #: Its launch until every replica has loaded (or one failed); None before it starts.
    settling: asyncio.Task[None] | None

    @property
    def state(self) -> str:
        """launching, ready or error."""
        ...

    def in_flight(self) -> int:
        """Requests it serves now."""
        ...

    def idle_since(self) -> float | None:
        """When it last finished a request or became ready, on the scheduler's clock (None: it never did)."""
        ...


M = TypeVar("M", bound=Runner)


class Spawner(Protocol[M]):
    """How the scheduler starts and stops models (the Supervisor with its worker processes; a test's fake)."""

    async def launch(self, body: LaunchBody, *, keep_failed: bool = False) -> str:
        """Start `body`'s model and answer its uid once it is ready. The model is in the scheduler's `models`
        from when it starts loading; a launch that fails raises an XituiError (InsufficientMemoryError when
        it does not fit, UidInUseError when another holds its uid) and leaves no model listed, unless
        `keep_failed`, which keeps one that failed while loading listed in error."""
        ...

    async def unload(self, model: M, why: str) -> None:
        """Stop a model the scheduler has taken out of `models` (`why`: what its requests in flight are told)."""
        ...

    def failed_model(self, uid: str, request: dict[str, Any], reason: str) -> M:
        """A model listed in error for a marked one that could not even start (its registration or files gone)."""
        ...


class Scheduler(Generic[M]):
    """The models that run and the decisions about them: loads on request, idle unloads, room under
    server.max_loaded, restores at start."""

    def __init__(self, spawner: Spawner[M], clock: Callable[[], float] = time.time, max_loaded: int = 0,
                 max_loading: int = DEFAULT_MAX_LOADING):
        self.spawner = spawner
        #: Wall-clock seconds, the clock a model's idle_since is read on.
        self.clock = clock
        #: Models a load on request may find running before it unloads the least recently used idle one
        #: (config server.max_loaded; 0: no limit).
        self.max_loaded = max_loaded
        self.models: dict[str, M] = {}
        #: uid -> why it is gone, for models the scheduler unloaded (a 404 says so).
        self.unloaded: dict[str, str] = {}
        #: Since the server started, for /metrics: unloads by why (idle, max_loaded, terminated).
        self.unloads: Counter[str] = Counter()
        #: What the last start's restore did: one entry per marked model.
        self.restored: list[dict[str, Any]] = []
        #: Launches made for requests, by the name they were made for: concurrent requests share one.
        self._loads: dict[str, asyncio.Future[str]] = {}
        #: Those launches take turns, at most server.max_loading at once (server/runtime/load_queue.py).
        self.load_queue = LoadQueue(max_loading)

    def get(self, uid: str) -> M:
        model = self.models.get(uid)
        if model is None:
            if uid in self.unloaded:
                raise NotFoundError(f"model {uid!r} {self.unloaded[uid]}; launch it again to use it")
            raise NotFoundError(f"model {uid!r} is not running (see `xitui list`)")
        return model

    # --- load on request --------------------------------------------------------------------------

    async def load(self, name: str, request: dict[str, Any]) -> str:
        """Launch `request` for a request naming `name`, in its turn (load_queue); requests naming `name`
        meanwhile wait for the same launch and get its uid, or its error."""
        load = self._loads.get(name)
        if load is None:
            load = asyncio.ensure_future(self.load_queue.run(name, self._load(request)))
            self._loads[name] = load
            load.add_done_callback(lambda _: self._loads.pop(name, None))
        return await asyncio.shield(load)

    async def _load(self, request: dict[str, Any]) -> str:
        """Launch a model for a request, making room first when server.max_loaded models run."""
        try:
            body = LaunchBody.model_validate(request)
        except ValidationError as exc:
            raise LaunchError(f"the remembered launch settings are refused: {problems_text(exc.errors())}") from None
        log.info("loading %s for a request that names it", body.model_uid or body.model_name)
        while self.max_loaded and len(self.models) >= self.max_loaded:
            if not await self._unload_least_used(body):
                raise AllBusyError(f"{len(self.models)} models run (server.max_loaded) and none is idle: "
                                   f"{body.model_uid or body.model_name} loads when one is; try again shortly")
        while True:
            try:
                return await self.spawner.launch(body)
            except InsufficientMemoryError:
                if not self.max_loaded or not await self._unload_least_used(body):
                    raise
            except UidInUseError:  # someone launched it meanwhile: that launch serves the request
                model = self.get(body.model_uid or body.model_name)
                if model.settling is not None:
                    await asyncio.shield(model.settling)
                return model.uid

    async def _unload_least_used(self, body: LaunchBody) -> bool:
        """Unload the idle model used longest ago to make room for `body`'s; False when none is idle."""
        idle = [m for m in self.models.values() if m.state == "ready" and not m.in_flight()]
        if not idle:
            return False
        model = min(idle, key=lambda m: m.idle_since() or 0)
        why = f"was unloaded to make room for {body.model_uid or body.model_name} (server.max_loaded)"
        self.models.pop(model.uid, None)
        self.unloaded[model.uid] = why
        self.unloads["max_loaded"] += 1
        await self.spawner.unload(model, why)
        log.info("model %s %s", model.uid, why)
        return True

    # --- idle unload --------------------------------------------------------------------------------

    @staticmethod
    def expires_at(model: Runner) -> float | None:
        """When `model`'s ttl runs out: None while it launches or serves a request (idle time starts again
        at the end of each), or when it has no ttl."""
        if model.ttl is None or model.state != "ready" or model.in_flight():
            return None
        since = model.idle_since()
        return None if since is None else since + model.ttl

    async def unload_idle(self) -> list[str]:
        """Unload every model idle past its time to live; returns their uids."""
        now = self.clock()
        gone = []
        for uid, model in list(self.models.items()):
            when = self.expires_at(model)
            if when is None or now < when or self.models.get(uid) is not model:
                continue
            idle = human_duration(now - (model.idle_since() or now))
            why = f"was unloaded after {idle} idle (its ttl is {human_duration(model.ttl)})"
            self.models.pop(uid, None)
            self.unloaded[uid] = why
            self.unloads["idle"] += 1
            await self.spawner.unload(model, why)
            log.info("model %s %s", uid, why)
            gone.append(uid)
        return gone

    async def watch_idle(self, every: float = IDLE_CHECK) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await self.unload_idle()
            except Exception:  # the watcher must outlive any one model's trouble
                log.exception("idle check failed")

    # --- restore ----------------------------------------------------------------------------------

    async def restore(self, marked: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Relaunch the models marked to come back (uid, remembered launch), one after the other; each
        result is logged and kept in `restored`, "pending" until its turn. One that cannot come back is
        listed in error with the reason."""
        self.restored = [{"model_uid": uid, "result": "pending"} for uid, _ in marked]
        for entry, (uid, request) in zip(self.restored, marked, strict=True):
            start = self.clock()
            try:
                # what launches.json holds passes the checks a launch request does (it is a file on disk)
                try:
                    body = LaunchBody.model_validate({**request, "restore": True})
                except ValidationError as exc:
                    raise LaunchError(f"the remembered launch settings are refused: {problems_text(exc.errors())}"
                                      ) from None
                await self.spawner.launch(body, keep_failed=True)
            except XituiError as exc:
                entry.update(result="error", error=str(exc))
                if uid not in self.models:
                    self.models[uid] = self.spawner.failed_model(uid, request, str(exc))
                log.warning("could not restore model %s: %s", uid, exc)
                continue
            entry.update(result="ready", seconds=round(self.clock() - start, 2))
            log.info("restored model %s (%.1f s)", uid, entry["seconds"])
        return self.restored
