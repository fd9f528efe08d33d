"""Runs one worker process per launched model and routes requests to it (no model library here).

A worker's death, whatever the cause (SIGKILL included), closes its protocol pipe; the reader task sees
that at once, fails the requests in flight and marks the model `error`. The server itself never waits
on a worker for anything but the answers it asked for.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from xitui.core.errors import ConflictError, LaunchError, ModelFailedError, NotFoundError, XituiError
from xitui.core.registry import Registry
from xitui.server.launch import LaunchPlan

log = logging.getLogger("xitui.supervisor")

#: Longest protocol line the supervisor accepts (a batch of embedding vectors is one line).
LINE_LIMIT = 256 * 1024 * 1024


class Inbox:
    """Messages for one request, in order. asyncio.Queue does the same with far more machinery, and one
    is made per request: at a few hundred embedding requests a second that showed in profiles."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: deque[dict[str, Any]] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, msg: dict[str, Any]) -> None:
        self.items.append(msg)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> dict[str, Any]:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.popleft()


@dataclass
class Metrics:
    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    tokens_generated: int = 0
    last_ttft: float | None = None
    last_tokens_per_s: float | None = None
    #: Texts in the last and in the largest embedding batch (dynamic batching at work).
    last_batch_size: int | None = None
    max_batch_size: int = 0
    #: When the last request ended (epoch seconds; None: never used), for the idle time.
    last_used: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ModelProcess:
    uid: str
    plan: LaunchPlan
    log_path: Path
    state: str = "launching"
    error: str | None = None
    progress: float = 0.0
    stage: str = "starting worker"
    info: dict[str, Any] = field(default_factory=dict)
    metrics: Metrics = field(default_factory=Metrics)
    proc: asyncio.subprocess.Process | None = None
    launched_at: float = field(default_factory=time.time)
    launch_seconds: float | None = None
    pending: dict[int, Inbox] = field(default_factory=dict)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    terminating: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def memory_rss(self) -> int | None:
        """Resident memory of the worker process (None once it is gone)."""
        if self.pid is None or self.state == "error":
            return None
        try:
            import psutil

            return psutil.Process(self.pid).memory_info().rss
        except Exception:  # the process ended between the check and the reading
            return None

    def describe(self) -> dict[str, Any]:
        """Xinference's describe fields, plus what a dashboard shows (state, pid, memory, metrics)."""
        data = self.plan.describe()
        data.update(
            model_engine=self.plan.engine,
            replica=1,
            state=self.state,
            error=self.error,
            progress=self.progress,
            stage=self.stage,
            pid=self.pid,
            memory_rss=self.memory_rss(),
            launched_at=self.launched_at,
            launch_seconds=self.launch_seconds,
            device=self.info.get("device"),
            chat_format=self.info.get("chat_format"),
            metrics=self.metrics.as_dict(),
        )
        if self.info.get("context_length"):
            data["context_length"] = self.info["context_length"]
        return data


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


class Supervisor:
    def __init__(self, registry: Registry, home: Path):
        self.registry = registry
        self.home = home
        self.models: dict[str, ModelProcess] = {}
        self._ids = itertools.count(1)
        self._lock = asyncio.Lock()

    # --- lifecycle ------------------------------------------------------------------------------

    def get(self, uid: str) -> ModelProcess:
        model = self.models.get(uid)
        if model is None:
            raise NotFoundError(f"model {uid!r} is not running (see `xitui list`)")
        return model

    async def launch(self, request: dict[str, Any], wait_ready: bool = True) -> str:
        plan = LaunchPlan.build(self.registry, request)
        uid = request.get("model_uid") or plan.model_name
        if not isinstance(uid, str) or not uid.strip() or "/" in uid:
            raise LaunchError("model_uid: must be a non-empty name without '/'")
        async with self._lock:
            old = self.models.get(uid)
            if old is not None and old.state != "error":
                raise ConflictError(
                    f"model uid {uid!r} is already {'running' if old.state == 'ready' else old.state}; "
                    "terminate it first or choose another --model-uid"
                )
            if old is not None:
                await self._stop(old)
            model = ModelProcess(uid=uid, plan=plan, log_path=self.home / "logs" / f"{uid}.log")
            self.models[uid] = model
            await self._spawn(model)
        if not wait_ready:
            return uid
        await model.settled.wait()
        if model.state == "error":
            if self.models.get(uid) is model:
                del self.models[uid]
            raise LaunchError(f"could not launch {plan.model_name}: {model.error}")
        return uid

    async def _spawn(self, model: ModelProcess) -> None:
        model.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(model.log_path, "ab") as log_file:
            model.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "xitui.worker",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=log_file,
                limit=LINE_LIMIT,
                env={**os.environ, **model.plan.envs},
            )
        assert model.proc.stdin is not None
        model.proc.stdin.write(orjson.dumps(model.plan.worker_settings()) + b"\n")
        model.reader = asyncio.create_task(self._read(model))

    async def _read(self, model: ModelProcess) -> None:
        """Route everything the worker says; on EOF, the worker is gone."""
        proc = model.proc
        assert proc is not None and proc.stdout is not None
        last_error: str | None = None
        start = time.perf_counter()
        while True:
            try:
                line = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                last_error = "the worker sent a line too long to read"
                break
            if not line:
                break
            try:
                msg = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            rid = msg.get("id")
            if rid is not None:
                queue = model.pending.get(rid)
                if queue is not None:
                    queue.put_nowait(msg)
                continue
            event = msg.get("event")
            if event == "progress":
                model.progress = float(msg.get("progress", 0.0))
                model.stage = str(msg.get("stage", ""))
            elif event == "ready":
                model.info = msg.get("info") or {}
                model.state = "ready"
                model.progress = 1.0
                model.stage = "ready"
                model.launch_seconds = time.perf_counter() - start
                model.settled.set()
            elif event == "error":
                last_error = str(msg.get("message"))
        code = await proc.wait()
        if model.terminating:
            return
        if last_error is None:
            how = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
            tail = _log_tail(model.log_path)
            last_error = f"the worker process {how}" + (f" ({tail})" if tail else "")
            if code == -signal.SIGKILL and model.state == "launching":
                last_error += "; it may have run out of memory"
        was = model.state
        model.state = "error"
        model.error = last_error
        model.stage = "error"
        model.settled.set()
        log.warning("model %s (%s): %s", model.uid, was, last_error)
        for queue in list(model.pending.values()):
            queue.put_nowait({"error": f"model {model.uid!r} failed: {last_error}", "status": 500})

    async def terminate(self, uid: str) -> None:
        model = self.get(uid)
        self.models.pop(uid, None)
        await self._stop(model)

    async def _stop(self, model: ModelProcess) -> None:
        model.terminating = True
        proc = model.proc
        if proc is None:
            return
        for queue in list(model.pending.values()):
            queue.put_nowait({"error": f"model {model.uid!r} was terminated", "status": 400})
        if proc.returncode is None:
            if model.state == "launching":
                proc.kill()  # a loading worker reads no stdin yet: nothing to wait for
                await proc.wait()
            else:
                try:
                    assert proc.stdin is not None
                    proc.stdin.close()  # the worker exits when its stdin closes
                    await asyncio.wait_for(proc.wait(), timeout=3)
                except (asyncio.TimeoutError, OSError):
                    proc.kill()
                    await proc.wait()
        if model.reader is not None:
            await asyncio.gather(model.reader, return_exceptions=True)
        if not model.settled.is_set():  # a launch waiting for this model gets its answer
            model.state = "error"
            model.error = "it was terminated while launching"
            model.settled.set()

    async def shutdown(self) -> None:
        for uid in list(self.models):
            await self.terminate(uid)

    # --- requests -------------------------------------------------------------------------------

    async def call(self, uid: str, op: str, payload: dict[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Send one request to a model's worker and yield its messages until the last one.

        Messages are the worker's: {"text"} pieces, then {"done"} or {"result"}; an {"error"} message
        is raised as an XituiError instead. Closing the iterator early cancels the request.
        """
        model = self.get(uid)
        if model.state == "error":
            raise ModelFailedError(f"model {uid!r} is in error: {model.error}")
        if model.state != "ready":
            raise XituiError(f"model {uid!r} is still {model.state}; wait until it is ready")
        rid = next(self._ids)
        queue = Inbox()
        model.pending[rid] = queue
        metrics = model.metrics
        metrics.requests += 1
        metrics.in_flight += 1
        finished = False
        try:
            assert model.proc is not None and model.proc.stdin is not None
            try:
                model.proc.stdin.write(orjson.dumps({"id": rid, "op": op, **payload}) + b"\n")
            except (BrokenPipeError, ConnectionResetError, RuntimeError):
                raise ModelFailedError(f"model {uid!r} is not running any more") from None
            while True:
                msg = await queue.get()
                if "error" in msg:
                    finished = True
                    status = int(msg.get("status", 500))
                    metrics.errors += status >= 500
                    error = (ModelFailedError if status >= 500 else XituiError)(msg["error"])
                    error.status_code = status
                    raise error
                if "done" in msg:
                    finished = True
                    done = msg["done"]
                    metrics.last_ttft = done.get("ttft")
                    metrics.last_tokens_per_s = done.get("tokens_per_s")
                    metrics.tokens_generated += done.get("usage", {}).get("completion_tokens", 0)
                elif "result" in msg:
                    finished = True
                    batch = msg["result"].get("batch")
                    if batch:
                        metrics.last_batch_size = batch
                        metrics.max_batch_size = max(metrics.max_batch_size, batch)
                yield msg
                if finished:
                    return
        finally:
            metrics.in_flight -= 1
            metrics.last_used = time.time()
            model.pending.pop(rid, None)
            if not finished and model.proc is not None and model.proc.returncode is None:
                try:
                    assert model.proc.stdin is not None
                    model.proc.stdin.write(orjson.dumps({"id": rid, "op": "cancel"}) + b"\n")
                except (BrokenPipeError, ConnectionResetError, RuntimeError):
                    pass
