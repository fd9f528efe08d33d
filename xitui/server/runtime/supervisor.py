"""Runs launched models, each as one or more worker processes (replicas), and routes requests to them.

No model library is imported here. Around launching: the memory estimate is checked before anything
starts (core/machine/estimate.py via capacity.py), models idle past their time to live are unloaded, and the
launch settings are remembered so that marked models come back when the server starts again.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from xitui import wire
from xitui.core.config import DEFAULT_MAX_RESTARTS, WARM_ENGINES
from xitui.core.errors import LaunchError, ModelFailedError, NotFoundError, XituiError
from xitui.core.machine import capacity
from xitui.core.machine import memory as machine
from xitui.core.machine.estimate import Estimate, InsufficientMemoryError, estimate
from xitui.core.specs.bundled import BUNDLED_ORDER
from xitui.core.specs.names import MODEL_TYPES
from xitui.core.specs.registry import Registry
from xitui.core.specs.spec import LLMFamily
from xitui.server.edge.fast_path import CLIENT
from xitui.server.runtime.launch_plan import LaunchPlan
from xitui.server.runtime.launch_records import LaunchMemory
from xitui.server.runtime.launch_request import UID_PATTERN, LaunchBody
from xitui.server.runtime.load_queue import DEFAULT_MAX_LOADING, LoadQueue
from xitui.server.runtime.model import Model
from xitui.server.runtime.restarts import InFlight, Restarts, exit_cause, stopped_on_purpose
from xitui.server.runtime.scheduler import Scheduler, UidInUseError
from xitui.server.runtime.warm_process import WarmProcess
from xitui.server.runtime.worker_process import Inbox, Replica

log = logging.getLogger("xitui.supervisor")

#: Seconds the files' headers may take to read for the estimate (a stuck network disk, a huge sparse file).
READ_TIMEOUT = 30.0
UID_RE = re.compile(UID_PATTERN)


#: Each model type in words, and the route that serves it.
_ROUTES = {"LLM": ("an LLM", "/v1/completions or /v1/chat/completions"),
           "embedding": ("an embedding model", "/v1/embeddings"), "rerank": ("a rerank model", "/v1/rerank")}


def check_ability(name: str, kind: str, abilities: list[str], ability: str, engine: str = "") -> None:
    """Refuse a request that asks a model for what it does not do (`ability`: generate, chat, embed or
    rerank), with the route that would serve it. An LLM with the `embed` ability embeds on llama.cpp."""
    if ability == "embed" and kind == "LLM" and "embed" in abilities:
        if engine != "llama.cpp":
            raise XituiError(f"model {name!r} has the embed ability, which xitui serves on llama.cpp (GGUF, or "
                             f"PyTorch launched with model_engine llama.cpp); it runs on {engine}")
        return
    wanted = {"embed": "embedding", "rerank": "rerank"}.get(ability, "LLM")
    if kind != wanted:
        what, use = _ROUTES.get(kind, (kind, "another route"))
        raise XituiError(f"model {name!r} is {what}, not {_ROUTES[wanted][0]}: use {use}")
    if kind == "LLM" and ability not in abilities:
        raise XituiError(f"model {name!r} cannot {ability} (its abilities: {', '.join(abilities)})")


def check_uid(uid: object) -> str:
    """A model uid as a launch may give it: it names the model's log files."""
    if not isinstance(uid, str) or not UID_RE.fullmatch(uid):
        raise LaunchError("model_uid: letters, digits, '.', '_' and '-', starting with a letter or digit, "
                          "at most 100 characters")
    return uid


def _replica_envs(settings: wire.Settings, envs: dict[str, str], replicas: int) -> dict[str, str]:
    """The launch's envs, with the cores shared out between replicas that name no thread count."""
    envs = dict(envs)
    if replicas > 1 and "n_threads" not in settings and "XITUI_THREADS" not in {**os.environ, **envs}:
        envs["XITUI_THREADS"] = str(_threads_each(replicas))
    return envs


def _threads_each(replicas: int) -> int:
    """Physical cores shared out between replicas: more threads than cores slows every one of them."""
    return max(1, machine.physical_cores() // replicas)


class Supervisor:
    """Every model the server runs: launches (fit check, replicas, warm forks), and each request routed to
    the least busy ready replica. Which models run (loads on request, idle unloads, max_loaded, restores at
    start) is its `scheduler`'s to decide (server/runtime/scheduler.py); the supervisor starts and stops them."""

    def __init__(self, registry: Registry, home: Path, default_ttl: float | None = None,
                 default_parallel: int | None = None, warm_engines: list[str] | None = None,
                 allowed_envs: list[str] | None = None, autoload: bool = True, max_loaded: int = 0,
                 max_loading: int = DEFAULT_MAX_LOADING,
                 max_restarts: int = DEFAULT_MAX_RESTARTS, default_speculative: str = "off"):
        self.registry = registry
        #: A request naming a registered model that is not running launches it (config server.autoload),
        #: first unloading the least recently used idle model when `max_loaded` models run (0: no limit).
        self.autoload = autoload
        self.scheduler: Scheduler[Model] = Scheduler(self, max_loaded=max_loaded, max_loading=max_loading)
        #: Since the server started, for /metrics: launches by (warm or cold start, ready or error), and
        #: unloads by why (idle, max_loaded, terminated; the scheduler's). Not by uid: a server that launches
        #: a new uid for each job would keep a series for every one it ever ran.
        self.launches: Counter[tuple[str, str]] = Counter()
        #: Restarts a model's workers may get within an hour after they die on their own (config
        #: server.max_restarts; 0: none).
        self.max_restarts = max_restarts
        #: Set as the server shuts down: a worker that dies meanwhile is not restarted.
        self._closing = False
        #: Launch `envs` names the config allows besides the builtin allow-list (server/runtime/launch_envs.py).
        self.allowed_envs = frozenset(allowed_envs or ())
        #: Forks workers with their libraries already imported (config server.warm; [] keeps it off).
        self.warm = WarmProcess(list(WARM_ENGINES) if warm_engines is None else warm_engines,
                               home / "logs" / "warm-worker.log")
        self.home = home
        self.default_ttl = default_ttl
        #: Slots of a llama.cpp model whose launch names no n_parallel (config server.n_parallel).
        self.default_parallel = default_parallel
        #: Speculative decoding of a llama.cpp model whose launch does not say (config server.speculative).
        self.default_speculative = default_speculative
        self.memory = LaunchMemory(home)
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    # --- the scheduler's state, read here ------------------------------------------------------

    @property
    def models(self) -> dict[str, Model]:
        return self.scheduler.models

    @property
    def unloaded(self) -> dict[str, str]:
        """uid -> why it is gone, for models unloaded for being idle or to make room (a 404 says so)."""
        return self.scheduler.unloaded

    @property
    def unloads(self) -> Counter[str]:
        return self.scheduler.unloads

    @property
    def restored(self) -> list[dict[str, Any]]:
        """What the last start's restore did: one entry per marked model."""
        return self.scheduler.restored

    @property
    def load_queue(self) -> LoadQueue:
        return self.scheduler.load_queue

    @property
    def max_loaded(self) -> int:
        return self.scheduler.max_loaded

    # --- lifecycle ------------------------------------------------------------------------------

    def get(self, uid: str) -> Model:
        return self.scheduler.get(uid)

    # --- load on request --------------------------------------------------------------------------

    def running_uid(self, name: str) -> str | None:
        """The running (or launching) model a request's `model` names: its uid, else the one model launched
        from the registration of that name."""
        if name in self.models:
            return name
        found = [uid for uid, m in self.models.items() if m.plan.model_name.lower() == name.lower()]
        return found[0] if len(found) == 1 else None

    async def ready(self, name: str, ability: str) -> Model:
        """The ready model for a request naming `name` that asks it to `ability` (generate, chat, embed or
        rerank): a running one, or with server.autoload one launched for it now with its remembered launch
        settings (else the defaults), concurrent requests sharing the launch. A model that cannot fit is a
        409; one of the wrong kind a 400, before anything loads."""
        uid = self.running_uid(name)
        if uid is None and self.autoload:
            request = await asyncio.to_thread(self._on_request, name, ability)
            if request is not None:
                return self.get(await self.scheduler.load(name, request))
        model = self.models.get(uid or name)
        if model is None and self.autoload and name not in self.unloaded:
            raise NotFoundError(f"model {name!r} is not running, and no model of that name loads on request "
                                "(see `xitui list` and `xitui registrations`)")
        model = self.get(uid or name)
        check_ability(name, model.plan.model_type, model.plan.registration.get("model_ability", []), ability,
                      model.plan.engine)
        if model.state == "launching" and model.settling is not None:
            await asyncio.shield(model.settling)
        if model.restarting:  # its worker died: the request is served once it is back
            await model.wait_restarts()
        return model

    def _on_request(self, name: str, ability: str) -> dict[str, Any] | None:
        """The launch a request for `name` makes (None: nothing of that name is registered)."""
        if not UID_RE.fullmatch(name):
            return None
        remembered = self.memory.entries.get(name)
        if remembered is not None:
            return dict(remembered["request"])
        try:
            kind, spec = self.registry.find(name)
        except NotFoundError:
            return None
        if spec.is_builtin and spec.model_name not in BUNDLED_ORDER:
            return None  # its files come from the Hub: a download is for a launch someone asks for
        gguf = any(s.model_format == "ggufv2" for s in getattr(spec, "model_specs", []))
        check_ability(name, kind, getattr(spec, "model_ability", []), ability, "llama.cpp" if gguf else "transformers")
        return {"model_name": spec.model_name, "model_type": kind, "model_uid": name}

    def loadable(self) -> list[dict[str, Any]]:
        """Registered models a request may name to have them loaded (custom ones and the bundled ones)."""
        names = []
        for kind in MODEL_TYPES:
            for spec in self.registry.specs(kind):
                if not spec.is_builtin or spec.model_name in BUNDLED_ORDER:
                    entry: dict[str, Any] = {"model_name": spec.model_name, "model_type": kind}
                    if isinstance(spec, LLMFamily):  # what a client needs to pick its handle (chat or generate)
                        entry["model_ability"] = list(spec.model_ability)
                    names.append(entry)
        return names

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
        if plan.engine == "llama.cpp" and "speculative" not in plan.options:
            plan.options["speculative"] = self.default_speculative
        return plan

    async def _weigh(self, settings: wire.Settings, replicas: int, envs: dict[str, str]) -> Estimate | None:
        """The launch's memory estimate, from the headers of the files its spec names, with the slot count
        chosen for this machine when the launch names none (written into `settings`): off the event loop,
        outside the launch lock (a slow read holds up no other launch), within READ_TIMEOUT."""
        gpu = await asyncio.to_thread(capacity.on_gpu, settings)
        try:
            est = await asyncio.wait_for(asyncio.to_thread(estimate, settings, gpu=gpu, replicas=replicas),
                                         READ_TIMEOUT)
        except asyncio.TimeoutError:
            raise LaunchError(f"reading the model's file headers took longer than {READ_TIMEOUT:.0f} s "
                              "(a slow or stuck disk?)") from None
        return await asyncio.to_thread(capacity.settle_slots, est, settings, *self._reserved(), envs)

    async def estimate(self, body: LaunchBody) -> dict[str, Any]:
        """What `launch --estimate-only` shows: the estimate and how it fits, launching nothing."""
        plan = await asyncio.to_thread(self._plan, body.request())
        settings = plan.worker_settings()
        est = await self._weigh(settings, body.replica, _replica_envs(settings, plan.envs, body.replica))
        if est is None:
            return {"model_name": plan.model_name, "estimate": None, "fits": None,
                    "reason": "the model's files are not on this machine yet (they are downloaded or assembled "
                              "at launch): nothing to measure"}
        fit = await asyncio.to_thread(capacity.fit_now, est, plan.engine, *self._reserved())
        return {"model_name": plan.model_name, **fit.as_dict(), "line": fit.line()}

    async def launch(self, body: LaunchBody, wait_ready: bool = True, keep_failed: bool = False) -> str:
        """Start a model's replicas. `wait_ready`: answer once all are ready (or one failed); `keep_failed`:
        a failed launch stays listed as an error (restores do this, so a user sees why).

        All or nothing: a replica that cannot be started stops those started before it."""
        request = body.request()
        replicas, restore, force = body.replica, body.restore, body.force
        try:
            ttl = body.ttl_seconds(self.default_ttl)
        except ValueError as exc:
            raise LaunchError(f"ttl: {exc}") from None
        plan = await asyncio.to_thread(self._plan, request)
        uid = check_uid(request.get("model_uid") or plan.model_name)
        settings = plan.worker_settings()
        self._refuse_running(uid)
        envs = _replica_envs(settings, plan.envs, replicas)
        est = await self._weigh(settings, replicas, envs)
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
                          estimate=est, restarts=Restarts(self.max_restarts))
            logs = self.home / "logs"
            try:
                for index in range(replicas):
                    replica = Replica(uid=uid, index=index,
                                      log_path=logs / (f"{uid}.log" if index == 0 else f"{uid}.{index}.log"),
                                      on_exit=self._on_exit)
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
        first = model.replicas[0] if model.replicas else None
        self.launches[((first.start if first else None) or "cold", model.state)] += 1
        if model.failure is None and model.state == "ready":
            model.ready_at = time.time()
            self.memory.remember(model.uid, model.request, model.restore)
            pids = ", ".join(str(r.pid) for r in model.replicas if r.pid)
            log.info("model %s ready in %.1f s (%s start, pid %s)", model.uid, model.ready_at - model.launched_at,
                     (first.start if first else None) or "cold", pids)
        elif model.state == "error":
            log.warning("model %s failed to launch: %s", model.uid, model.failure or model.error)

    async def terminate(self, uid: str) -> None:
        """Stop a model because its user said so: it does not come back at the next start."""
        model = self.get(uid)
        self.models.pop(uid, None)
        self.memory.forget(uid)
        self.unloads["terminated"] += 1
        await self._stop(model)
        log.info("model %s terminated", uid)

    async def unload(self, model: Model, why: str) -> None:
        """Stop a model the scheduler has taken out of `models` (idle past its ttl, or making room)."""
        await self._stop(model, why)

    async def _stop(self, model: Model, why: str = "was terminated") -> None:
        for task in model.restarting.values():  # one waiting out its backoff starts nothing
            task.cancel()
        await asyncio.gather(*(replica.stop(why) for replica in model.replicas))
        if model.settling is not None:
            await asyncio.gather(model.settling, return_exceptions=True)

    # --- workers that die on their own ----------------------------------------------------------

    def _on_exit(self, replica: Replica, was: str, code: int | None, reported: str | None) -> tuple[str, int] | None:
        """A worker ended without being stopped: note why, and restart it when the policy allows. Answers the
        error its requests in flight get. A launch still settling fails as before (no restart)."""
        model = self.models.get(replica.uid)
        if model is None or replica not in model.replicas or model.failure is not None or self._closing \
                or model.settling is None or not model.settling.done():
            return None
        cause = exit_cause(code)
        if stopped_on_purpose(code):
            replica.error = f"its worker was stopped by {cause} from outside the server; not restarted"
            replica.note(replica.error)
            log.warning("model %s: %s", replica.name, replica.error)
            return None
        if was == "launching" and reported is not None:  # a restart that could not load: no use retrying
            replica.error = f"could not restart its worker after it died ({model.restarts.last_cause}): {reported}"
            replica.note(replica.error)
            log.warning("model %s: %s", replica.name, replica.error)
            return None
        in_flight = [InFlight.of(request, client) for request, client in replica.requests.values()]
        decision = model.restarts.crashed(cause, in_flight)
        pid = replica.pid
        lines = [f"its worker (pid {pid}) died: {cause}, with {len(in_flight)} request(s) in flight"
                 + "".join(f"; {r.line()}" for r in in_flight)]
        lines += [f"the {r.line()} was in flight at two or more of its worker's deaths: likely their cause"
                  for r in decision.suspects]
        if decision.delay is None:
            replica.error = decision.reason
            lines.append(str(decision.reason))
        else:
            lines.append(f"restarting it in {decision.delay:g} s (restart {decision.recent} of at most "
                         f"{model.restarts.per_hour} within an hour)")
        for line in lines:
            log.warning("model %s: %s", replica.name, line)
            replica.note(line)
        if decision.delay is None:
            return f"model {replica.uid!r}: its worker died ({cause}) while answering; it crashed too often " \
                   "and is not restarted", 500
        replica.await_restart(f"restarting after {cause}")
        task = asyncio.create_task(self._restart(model, replica, decision.delay))
        model.restarting[replica.index] = task
        task.add_done_callback(lambda t: model.restarting.pop(replica.index, None)
                               if model.restarting.get(replica.index) is t else None)
        return f"model {replica.uid!r}: its worker died ({cause}) while answering; it is being restarted", 503

    async def _restart(self, model: Model, replica: Replica, delay: float) -> None:
        """After the backoff, start the dead worker again with its launch's settings (same uid, same log)."""
        await asyncio.sleep(delay)
        if replica.terminating or self._closing or self.models.get(model.uid) is not model:
            return
        await asyncio.shield(self._respawn(replica))  # a stop now finds the new process and ends it

    async def _respawn(self, replica: Replica) -> None:
        settled = replica.settled
        try:
            await replica.respawn()
        except (OSError, ValueError) as exc:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            replica.state, replica.error = "error", f"could not restart its worker: {why}"
            settled.set()
        await settled.wait()
        if replica.state == "ready":
            line = f"its worker is back (pid {replica.pid}, {replica.start} start, {replica.launch_seconds or 0:.1f} s)"
            replica.note(line)
            log.info("model %s: %s", replica.name, line)

    async def shutdown(self) -> None:
        """Every model's workers and the warm worker stopped at once: each ends when its stdin (or socket)
        closes, and a stop is as long as the slowest of them (one after the other, two models and the warm
        worker took 3.4 s)."""
        self._closing = True
        models = [self.models.pop(uid) for uid in list(self.models)]
        for failed in await asyncio.gather(*(self._stop(model) for model in models), self.warm.stop(),
                                           return_exceptions=True):
            if isinstance(failed, Exception):  # (the others are stopped all the same)
                log.warning("stopping a worker failed: %s: %s", type(failed).__name__, failed)

    # --- idle unload and restore (the scheduler's) ------------------------------------------------

    async def watch_idle(self) -> None:
        await self.scheduler.watch_idle()

    async def restore_marked(self) -> list[dict[str, Any]]:
        """Relaunch the models marked to come back (launches.json), one after the other (Scheduler.restore)."""
        return await self.scheduler.restore(self.memory.marked())

    def failed_model(self, uid: str, request: dict[str, Any], reason: str) -> Model:
        """A model in error for one that could not even be planned (registration or files gone)."""
        registration: dict[str, Any] = {"model_ability": [], "model_family": "", "model_lang": [],
                                        "dimensions": None, "max_tokens": None, "language": []}
        given = str(request.get("model_type", "LLM")).lower()
        model_type = given if given in ("embedding", "rerank") else "LLM"
        plan = LaunchPlan(model_name=str(request.get("model_name")), model_type=model_type, engine="",
                          model_format=str(request.get("model_format") or ""), model_size_in_billions=None,
                          quantization=str(request.get("quantization") or ""), model_path=None, model_id=None,
                          file_name=None, context_length=request.get("context_length"), registration=registration)
        return Model(uid=uid, plan=plan, request=request, replicas=[], restore=True, failure=reason)

    # --- requests -------------------------------------------------------------------------------

    async def call(self, uid: str, request: wire.Work) -> AsyncIterator[wire.Answer]:
        """Send one request to the least busy replica (numbered here: its id) and yield its messages until the
        last one (xitui/wire.py); an error message is raised as an XituiError instead. Closing the iterator
        early cancels the request."""
        model = self.get(uid)
        if model.failure is not None:
            raise ModelFailedError(f"model {uid!r} is in error: {model.error}")
        replica = model.pick()
        rid = request["id"] = next(self._ids)
        queue = Inbox()
        replica.pending[rid] = queue
        replica.requests[rid] = (request, CLIENT.get())
        metrics = replica.metrics
        metrics.started()
        finished = False
        try:
            if not replica.send(request):
                raise ModelFailedError(f"model {uid!r} is not running any more")
            while True:
                msg = await queue.get()
                if msg["kind"] in wire.LAST:
                    finished = True
                    metrics.record(msg)
                if msg["kind"] == "error":
                    status = msg["status"]
                    error = (ModelFailedError if status >= 500 else XituiError)(msg["error"])
                    error.status_code = status
                    raise error
                yield msg
                if finished:
                    return
        finally:
            metrics.ended()
            replica.pending.pop(rid, None)
            replica.requests.pop(rid, None)
            if not finished:
                replica.send(wire.cancel(rid))
