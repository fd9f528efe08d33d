"""Runs launched models, each as one or more worker processes (replicas), and routes requests to them.

No model library is imported here. Around launching: the memory estimate is checked before anything
starts (core/estimate.py via capacity.py), models idle past their time to live are unloaded, and the
launch settings are remembered so that marked models come back when the server starts again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from xitui.core import capacity
from xitui.core.config import WARM_ENGINES
from xitui.core.errors import LaunchError, ModelFailedError, NotFoundError, XituiError
from xitui.core.estimate import Estimate, InsufficientMemoryError, estimate
from xitui.core.launches import LaunchMemory
from xitui.core.registry import Registry
from xitui.core.units import human_duration, parse_duration
from xitui.server.bodies import LAUNCH_FIELDS, UID_PATTERN, LaunchBody, problems_text
from xitui.server.launch import LaunchPlan
from xitui.server.warm import WarmWorker
from xitui.server.worker_process import Inbox, Metrics, Replica

log = logging.getLogger("xitui.supervisor")

#: How often idle models are looked at (seconds).
IDLE_CHECK = 1.0
MAX_REPLICAS = 64
#: Seconds the files' headers may take to read for the estimate (a stuck network disk, a huge sparse file).
READ_TIMEOUT = 30.0
UID_RE = re.compile(UID_PATTERN)


class UidInUseError(XituiError):
    """A launch names a uid that a running (or launching) model holds."""

    status_code = 409


def check_uid(uid: object) -> str:
    """A model uid as a launch may give it: it names the model's log files."""
    if not isinstance(uid, str) or not UID_RE.match(uid):
        raise LaunchError("model_uid: letters, digits, '.', '_' and '-', starting with a letter or digit, "
                          "at most 100 characters")
    return uid


def launch_options(request: dict[str, Any], default_ttl: float | None) -> tuple[int, float | None, bool, bool]:
    """(replicas, ttl seconds or None for never, restore, force) from a launch request, checked."""
    replicas = request.get("replica", 1)
    if replicas is None:
        replicas = 1
    if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= MAX_REPLICAS:
        raise LaunchError(f"replica: a whole number from 1 to {MAX_REPLICAS}")
    ttl = default_ttl
    if request.get("ttl") is not None:
        try:
            ttl = parse_duration(request["ttl"])
        except ValueError as exc:
            raise LaunchError(f"ttl: {exc}") from None
    return replicas, ttl, bool(request.get("restore")), bool(request.get("force"))


def _threads_each(replicas: int) -> int:
    """Physical cores shared out between replicas: more threads than cores slows every one of them."""
    try:
        import psutil

        cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    except Exception:  # psutil cannot read the topology in some sandboxes
        cores = os.cpu_count() or 1
    return max(1, cores // replicas)


@dataclass
class Model:
    uid: str
    plan: LaunchPlan
    request: dict[str, Any]
    replicas: list[Replica]
    ttl: float | None = None
    restore: bool = False
    estimate: Estimate | None = None
    launched_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    #: Why the launch failed (a replica that could not load, files that are gone...).
    failure: str | None = None
    settling: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        states = {r.state for r in self.replicas}
        if self.failure is not None or not self.replicas or states == {"error"}:
            return "error"
        if "launching" in states:
            return "launching"
        return "ready"

    @property
    def error(self) -> str | None:
        if self.failure is not None:
            return self.failure
        errors = [r.error for r in self.replicas if r.error]
        if self.state == "error":
            return errors[0] if errors else "no replica is running"
        if errors:  # some replicas died, the others serve
            return "; ".join(f"replica {r.index}: {r.error}" for r in self.replicas if r.error)
        return None

    @property
    def pid(self) -> int | None:
        return self.replicas[0].pid if self.replicas else None

    @property
    def pids(self) -> list[int]:
        return [r.pid for r in self.replicas if r.pid is not None and r.state != "error"]

    @property
    def log_path(self) -> Path:
        return self.replicas[0].log_path

    def in_flight(self) -> int:
        return sum(r.metrics.in_flight for r in self.replicas)

    def idle_since(self) -> float | None:
        """When the model last finished a request (or became ready); None while it is busy or launching."""
        if self.state != "ready" or self.in_flight():
            return None
        used = [r.metrics.last_used for r in self.replicas if r.metrics.last_used]
        return max([self.ready_at or self.launched_at, *used])

    def unload_at(self) -> float | None:
        since = self.idle_since()
        return None if since is None or self.ttl is None else since + self.ttl

    def metrics(self) -> dict[str, Any]:
        """The replicas' metrics together (speeds from the replica used last)."""
        parts = [r.metrics for r in self.replicas]
        total = Metrics()
        for m in parts:
            total.requests += m.requests
            total.errors += m.errors
            total.in_flight += m.in_flight
            total.tokens_generated += m.tokens_generated
            total.max_batch_size = max(total.max_batch_size, m.max_batch_size)
        used = [m for m in parts if m.last_used]
        if used:
            last = max(used, key=lambda m: m.last_used or 0)
            total.last_used = last.last_used
            total.last_ttft, total.last_tokens_per_s = last.last_ttft, last.last_tokens_per_s
            total.last_batch_size = last.last_batch_size
        return total.as_dict()

    def memory_rss(self) -> int | None:
        sizes = [s for s in (r.memory_rss() for r in self.replicas) if s is not None]
        return sum(sizes) if sizes else None

    def progress(self) -> tuple[float, str]:
        """The slowest replica's progress and stage."""
        if not self.replicas:
            return 0.0, "error" if self.failure else "starting"
        slowest = min(self.replicas, key=lambda r: r.progress)
        return slowest.progress, slowest.stage

    def describe(self) -> dict[str, Any]:
        """Xinference's describe fields, plus what a dashboard shows (state, pid, memory, metrics, replicas)."""
        data = self.plan.describe()
        first = self.replicas[0] if self.replicas else None
        info = first.info if first else {}
        progress, stage = self.progress()
        # the launch took as long as its slowest replica: its stages say where that time went
        slowest = max((r for r in self.replicas if r.launch_seconds is not None),
                      key=lambda r: r.launch_seconds or 0.0, default=None)
        data.update(
            model_engine=self.plan.engine,
            replica=len(self.replicas) or int(self.request.get("replica") or 1),
            state=self.state,
            error=self.error,
            progress=1.0 if self.state == "ready" else progress,
            stage="ready" if self.state == "ready" else stage,
            pid=self.pid,
            memory_rss=self.memory_rss(),
            launched_at=self.launched_at,
            launch_seconds=slowest.launch_seconds if slowest else None,
            launch_stages=slowest.stages if slowest else None,
            start=first.start if first else None,
            device=info.get("device"),
            chat_format=info.get("chat_format"),
            metrics=self.metrics(),
            ttl=self.ttl,
            idle_since=self.idle_since(),
            unload_at=self.unload_at(),
            restore=self.restore,
            estimate=self.estimate.as_dict() if self.estimate else None,
            replicas=[r.describe() for r in self.replicas],
        )
        if info.get("context_length"):
            data["context_length"] = info["context_length"]
        if info.get("n_threads"):
            data["n_threads"] = info["n_threads"]
        slots = int(info.get("n_parallel") or 1)  # requests a worker decodes together; more wait their turn
        busy = [r.metrics.in_flight for r in self.replicas]
        data.update(slots=slots, running=sum(min(n, slots) for n in busy),
                    queued=sum(max(0, n - slots) for n in busy))
        return data

    def pick(self) -> Replica:
        """The least busy ready replica (fewest requests in flight, then fewest served)."""
        ready = [r for r in self.replicas if r.state == "ready"]
        if not ready:
            state = self.state
            if state == "launching":
                raise XituiError(f"model {self.uid!r} is still launching; wait until it is ready")
            raise ModelFailedError(f"model {self.uid!r} is in error: {self.error}")
        return min(ready, key=lambda r: (r.metrics.in_flight, r.metrics.requests))


class Supervisor:
    def __init__(self, registry: Registry, home: Path, default_ttl: float | None = None,
                 default_parallel: int | None = None, warm_engines: list[str] | None = None,
                 allowed_envs: list[str] | None = None):
        self.registry = registry
        #: Launch `envs` names the config allows besides the builtin allow-list (core/launch_envs.py).
        self.allowed_envs = frozenset(allowed_envs or ())
        #: Forks workers with their libraries already imported (config server.warm; [] keeps it off).
        self.warm = WarmWorker(list(WARM_ENGINES) if warm_engines is None else warm_engines,
                               home / "logs" / "warm-worker.log")
        self.home = home
        self.default_ttl = default_ttl
        #: Slots of a llama.cpp model whose launch names no n_parallel (config server.n_parallel).
        self.default_parallel = default_parallel
        self.models: dict[str, Model] = {}
        #: uid -> why it is gone, for models unloaded for being idle (a 404 says so).
        self.unloaded: dict[str, str] = {}
        self.memory = LaunchMemory(home)
        #: What the last start's restore did: one entry per marked model.
        self.restored: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    # --- lifecycle ------------------------------------------------------------------------------

    def get(self, uid: str) -> Model:
        model = self.models.get(uid)
        if model is None:
            if uid in self.unloaded:
                raise NotFoundError(f"model {uid!r} {self.unloaded[uid]}; launch it again to use it")
            raise NotFoundError(f"model {uid!r} is not running (see `xitui list`)")
        return model

    def _reserved(self) -> tuple[int, int]:
        """Memory that launches still loading will take on top of what they hold now (RAM, GPU)."""
        ram = gpu = 0
        for model in self.models.values():
            if model.state == "launching" and model.estimate is not None:
                ram += max(0, model.estimate.ram - (model.memory_rss() or 0))
                gpu += model.estimate.gpu
        return ram, gpu

    def _plan(self, request: dict[str, Any]) -> LaunchPlan:
        plan = LaunchPlan.build(self.registry, request, self.allowed_envs)
        if plan.engine == "llama.cpp" and "n_parallel" not in plan.options and self.default_parallel:
            plan.options["n_parallel"] = self.default_parallel
        return plan

    async def _weigh(self, settings: dict[str, Any], replicas: int) -> Estimate | None:
        """The launch's memory estimate, from the headers of the files its spec names: off the event loop,
        outside the launch lock (a slow read holds up no other launch), within READ_TIMEOUT."""
        gpu = await asyncio.to_thread(capacity.on_gpu, settings)
        try:
            return await asyncio.wait_for(asyncio.to_thread(estimate, settings, gpu=gpu, replicas=replicas),
                                          READ_TIMEOUT)
        except asyncio.TimeoutError:
            raise LaunchError(f"reading the model's file headers took longer than {READ_TIMEOUT:.0f} s "
                              "(a slow or stuck disk?)") from None

    async def estimate(self, request: dict[str, Any]) -> dict[str, Any]:
        """What `launch --estimate-only` shows: the estimate and how it fits, launching nothing."""
        replicas, _, _, _ = launch_options(request, self.default_ttl)
        plan = await asyncio.to_thread(self._plan, request)
        est = await self._weigh(plan.worker_settings(), replicas)
        if est is None:
            return {"model_name": plan.model_name, "estimate": None, "fits": None,
                    "reason": "the model's files are not on this machine yet (they are downloaded or assembled "
                              "at launch): nothing to measure"}
        fit = await asyncio.to_thread(capacity.fit_now, est, plan.engine, *self._reserved())
        return {"model_name": plan.model_name, **fit.as_dict(), "line": fit.line()}

    async def launch(self, request: dict[str, Any], wait_ready: bool = True, keep_failed: bool = False) -> str:
        """Start a model's replicas. `wait_ready`: answer once all are ready (or one failed); `keep_failed`:
        a failed launch stays listed as an error (restores do this, so a user sees why).

        All or nothing: a replica that cannot be started stops those started before it."""
        replicas, ttl, restore, force = launch_options(request, self.default_ttl)
        plan = await asyncio.to_thread(self._plan, request)
        uid = check_uid(request.get("model_uid") or plan.model_name)
        settings = plan.worker_settings()
        self._refuse_running(uid)
        est = await self._weigh(settings, replicas)
        async with self._lock:
            self._refuse_running(uid)
            old = self.models.get(uid)
            if old is not None:
                await self._stop(old)
                self.models.pop(uid, None)
            if est is not None:
                fit = await asyncio.to_thread(capacity.fit_now, est, plan.engine, *self._reserved())
                if not fit.fits and not force:
                    raise InsufficientMemoryError(f"{plan.model_name} {fit.line()}; --force launches anyway")
            self.unloaded.pop(uid, None)
            model = Model(uid=uid, plan=plan, request=dict(request), replicas=[], ttl=ttl, restore=restore,
                          estimate=est)
            envs = dict(plan.envs)
            if replicas > 1 and "n_threads" not in settings and "XITUI_THREADS" not in {**os.environ, **envs}:
                envs["XITUI_THREADS"] = str(_threads_each(replicas))
            logs = self.home / "logs"
            try:
                for index in range(replicas):
                    replica = Replica(uid=uid, index=index,
                                      log_path=logs / (f"{uid}.log" if index == 0 else f"{uid}.{index}.log"))
                    model.replicas.append(replica)
                    await replica.spawn(settings, envs, self.warm)
            except (OSError, ValueError) as exc:
                for started in model.replicas:
                    await started.stop("failed to launch with its other replicas")
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise LaunchError(f"could not start a worker for {uid!r}: {why}") from None
            self.models[uid] = model
            model.settling = asyncio.create_task(self._settle(model))
        if not wait_ready:
            return uid
        await asyncio.shield(model.settling)
        if model.state == "error":
            if not keep_failed and self.models.get(uid) is model:
                del self.models[uid]
            raise LaunchError(f"could not launch {plan.model_name}: {model.error}")
        return uid

    def _refuse_running(self, uid: str) -> None:
        old = self.models.get(uid)
        if old is not None and old.state != "error":
            raise UidInUseError(
                f"model uid {uid!r} is already {'running' if old.state == 'ready' else old.state}; "
                "terminate it first or choose another --model-uid"
            )

    async def _settle(self, model: Model) -> None:
        """Wait for every replica; one that fails to load fails the launch and stops the others."""
        pending = {asyncio.ensure_future(r.settled.wait()): r for r in model.replicas}
        while pending:
            done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                replica = pending.pop(task)
                if replica.state == "error" and model.failure is None:
                    model.failure = replica.error if len(model.replicas) == 1 else \
                        f"replica {replica.index}: {replica.error}"
                    for other in model.replicas:
                        if other is not replica:
                            await other.stop("failed to launch with its other replicas")
        if model.failure is None and model.state == "ready":
            model.ready_at = time.time()
            self.memory.remember(model.uid, model.request, model.restore)

    async def terminate(self, uid: str) -> None:
        """Stop a model because its user said so: it does not come back at the next start."""
        model = self.get(uid)
        self.models.pop(uid, None)
        self.memory.forget(uid)
        await self._stop(model)

    async def _stop(self, model: Model, why: str = "was terminated") -> None:
        for replica in model.replicas:
            await replica.stop(why)
        if model.settling is not None:
            await asyncio.gather(model.settling, return_exceptions=True)

    async def shutdown(self) -> None:
        for uid in list(self.models):
            model = self.models.pop(uid)
            await self._stop(model)
        await self.warm.stop()

    # --- idle unload and restore ----------------------------------------------------------------

    async def unload_idle(self) -> list[str]:
        """Unload every model idle past its time to live; returns their uids."""
        now = time.time()
        gone = []
        for uid, model in list(self.models.items()):
            when = model.unload_at()
            if when is None or now < when or self.models.get(uid) is not model:
                continue
            idle = human_duration(now - (model.idle_since() or now))
            why = f"was unloaded after {idle} idle (its ttl is {human_duration(model.ttl)})"
            self.models.pop(uid, None)
            self.unloaded[uid] = why
            await self._stop(model, why)
            log.info("model %s %s", uid, why)
            gone.append(uid)
        return gone

    async def watch_idle(self) -> None:
        while True:
            await asyncio.sleep(IDLE_CHECK)
            try:
                await self.unload_idle()
            except Exception:  # the watcher must outlive any one model's trouble
                log.exception("idle check failed")

    async def restore_marked(self) -> list[dict[str, Any]]:
        """Relaunch the models marked to come back, one after the other; each result is logged and kept
        in `restored`. A model that cannot come back is listed in error with the reason."""
        marked = self.memory.marked()
        self.restored = [{"model_uid": uid, "result": "pending"} for uid, _ in marked]
        for entry, (uid, request) in zip(self.restored, marked, strict=True):
            start = time.perf_counter()
            try:
                # what launches.json holds passes the checks a launch request does (it is a file on disk)
                try:
                    request = LaunchBody.model_validate(request).model_dump(include=LAUNCH_FIELDS)
                except ValidationError as exc:
                    raise LaunchError(f"the remembered launch settings are refused: {problems_text(exc.errors())}"
                                      ) from None
                await self.launch({**request, "restore": True}, keep_failed=True)
            except XituiError as exc:
                entry.update(result="error", error=str(exc))
                if uid not in self.models:
                    self._failed_entry(uid, request, str(exc))
                log.warning("could not restore model %s: %s", uid, exc)
                continue
            entry.update(result="ready", seconds=round(time.perf_counter() - start, 2))
            log.info("restored model %s (%.1f s)", uid, entry["seconds"])
        return self.restored

    def _failed_entry(self, uid: str, request: dict[str, Any], reason: str) -> None:
        """List a model that could not even be planned (registration or files gone) as an error."""
        registration: dict[str, Any] = {"model_ability": [], "model_family": "", "model_lang": [],
                                        "dimensions": None, "max_tokens": None, "language": []}
        model_type = "embedding" if str(request.get("model_type", "LLM")).lower() == "embedding" else "LLM"
        plan = LaunchPlan(model_name=str(request.get("model_name")), model_type=model_type, engine="",
                          model_format=str(request.get("model_format") or ""), model_size_in_billions=None,
                          quantization=str(request.get("quantization") or ""), model_path=None, model_id=None,
                          file_name=None, context_length=request.get("context_length"), registration=registration)
        self.models[uid] = Model(uid=uid, plan=plan, request=request, replicas=[], restore=True, failure=reason)

    # --- requests -------------------------------------------------------------------------------

    async def call(self, uid: str, op: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Send one request to the least busy replica and yield its messages until the last one.

        Messages are the worker's: {"text"} pieces, then {"done"} or {"result"}; an {"error"} message
        is raised as an XituiError instead. Closing the iterator early cancels the request.
        """
        model = self.get(uid)
        if model.failure is not None:
            raise ModelFailedError(f"model {uid!r} is in error: {model.error}")
        replica = model.pick()
        rid = next(self._ids)
        queue = Inbox()
        replica.pending[rid] = queue
        metrics = replica.metrics
        metrics.started()
        finished = False
        try:
            if not replica.send({"id": rid, "op": op, **payload}):
                raise ModelFailedError(f"model {uid!r} is not running any more")
            while True:
                msg = await queue.get()
                if "error" in msg or "done" in msg or "result" in msg:
                    finished = True
                    metrics.record(msg)
                if "error" in msg:
                    status = int(msg.get("status", 500))
                    error = (ModelFailedError if status >= 500 else XituiError)(msg["error"])
                    error.status_code = status
                    raise error
                yield msg
                if finished:
                    return
        finally:
            metrics.ended()
            replica.pending.pop(rid, None)
            if not finished:
                replica.send({"id": rid, "op": "cancel"})
