"""One worker process (a replica of a model): spawning it, reading what it says, stopping it.

A worker's death, whatever the cause (SIGKILL included), closes its protocol pipe; the reader task sees
that at once, marks the replica `error` and fails the requests in flight, after asking `on_exit` (the
supervisor's restart policy, xitui/server/runtime/restarts.py) what to tell them. The server never waits on a
worker for anything but the answers it asked for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from xitui import wire
from xitui.core.machine.python_command import python
from xitui.server.runtime.metrics import Metrics
from xitui.server.runtime.restarts import exit_cause

log = logging.getLogger("xitui.supervisor")


class Forker(Protocol):
    """What can start a worker faster than a new Python process: the warm worker (server/runtime/warm_process.py)."""

    async def fork(self, log_path: Path, envs: dict[str, str]) -> Any | None: ...

#: Longest protocol line the supervisor accepts (a batch of embedding vectors is one line).
LINE_LIMIT = 256 * 1024 * 1024


class Inbox:
    """Messages for one request, in order. asyncio.Queue does the same with far more machinery, and one
    is made per request: at a few hundred embedding requests a second that showed in profiles."""

    __slots__ = ("items", "waiter")

    def __init__(self) -> None:
        self.items: deque[wire.Answer] = deque()
        self.waiter: asyncio.Future[None] | None = None

    def put_nowait(self, msg: wire.Answer) -> None:
        self.items.append(msg)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> wire.Answer:
        while not self.items:
            self.waiter = asyncio.get_running_loop().create_future()
            try:
                await self.waiter
            finally:
                self.waiter = None
        return self.items.popleft()


def process_rss(pid: int | None) -> int | None:
    """Resident memory of a process (None when there is none, or it ended between the check and the reading)."""
    if pid is None:
        return None
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss
    except Exception:  # psutil.NoSuchProcess, AccessDenied
        return None


#: What marks the server's own lines in a worker's log (Replica.note).
NOTE = " xitui server: "


def log_tail(path: Path, lines: int = 3) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip() and NOTE not in line]  # the worker's own
    return " | ".join(kept[-lines:])


@dataclass
class Replica:
    """One worker process of a model; `index` 0 is the first (its log is `logs/UID.log`)."""

    uid: str
    index: int
    log_path: Path
    state: str = "launching"
    error: str | None = None
    progress: float = 0.0
    stage: str = "starting worker"
    info: wire.WorkerInfo = field(default_factory=lambda: wire.WorkerInfo())
    metrics: Metrics = field(default_factory=Metrics)
    #: asyncio's Process for a cold start, a ForkedProcess (runtime/warm_process.py) for one forked warm.
    proc: Any = None
    #: "warm" (forked from the warm worker) or "cold" (a new Python process).
    start: str = "cold"
    launch_seconds: float | None = None
    #: Seconds each launch stage took: process (fork or start, and the pipe), download, import, weights, warm-up.
    stages: dict[str, float] = field(default_factory=dict)
    spawned_at: float = 0.0
    pending: dict[int, Inbox] = field(default_factory=dict)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    terminating: bool = False
    #: The requests in the worker's hands, by id, with the client that sent each: to name them if it dies.
    requests: dict[int, tuple[wire.Work, str | None]] = field(default_factory=dict)
    #: Called when the worker ends without having been stopped, with the state it was in, its exit status
    #: and what it last reported; answers the error its requests in flight get (message, status), or None
    #: for the plain one. The supervisor restarts the worker from here.
    on_exit: Callable[[Replica, str, int | None, str | None], tuple[str, int] | None] | None = None
    #: The exit status of the last worker that ended on its own.
    exit_code: int | None = None
    #: What spawn was given, for a restart: settings, envs, the warm worker.
    launch_args: tuple[wire.Settings, dict[str, str], Forker | None] | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def name(self) -> str:
        return self.uid if self.index == 0 else f"{self.uid} replica {self.index}"

    def memory_rss(self) -> int | None:
        """Resident memory of the worker process (None once it is gone)."""
        return None if self.state == "error" else process_rss(self.pid)

    def describe(self) -> wire.ReplicaDescription:
        return {"index": self.index, "state": self.state, "error": self.error, "progress": self.progress,
                "stage": self.stage, "pid": self.pid, "memory_rss": self.memory_rss(),
                "launch_seconds": self.launch_seconds, "start": self.start, "stages": self.stages,
                "metrics": self.metrics.as_dict()}

    async def spawn(self, settings: wire.Settings, envs: dict[str, str], warm: Forker | None = None) -> None:
        """Start the worker: forked from `warm` (a WarmProcess) when it is ready, else as a new process."""
        self.spawned_at = time.perf_counter()
        self.launch_args = (settings, envs, warm)
        self.proc = await warm.fork(self.log_path, envs) if warm is not None else None
        self.start = "warm" if self.proc is not None else "cold"
        if self.proc is None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.log_path, "ab") as log_file:
                self.proc = await asyncio.create_subprocess_exec(
                    *python("-m", "xitui.worker"),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=log_file,
                    limit=LINE_LIMIT,
                    env={**os.environ, **envs},
                )
        assert self.proc.stdin is not None
        if self.terminating:  # stopped while its process started (a restart): nothing may outlive the stop
            self.proc.kill()
            await self.proc.wait()
            return
        self.proc.stdin.write(orjson.dumps(settings) + b"\n")
        self.reader = asyncio.create_task(self._read())

    def note(self, text: str) -> None:
        """A line of the server's in the worker's log (a death, a restart), stamped as the worker's own are."""
        try:
            with open(self.log_path, "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')}{NOTE}{text}\n")
        except OSError:
            pass

    def await_restart(self, stage: str) -> None:
        """Show the replica launching again (its worker died and is restarted): `settled` is set anew once
        the new worker is ready or has failed."""
        self.state, self.error, self.progress, self.stage = "launching", None, 0.0, stage
        self.settled = asyncio.Event()

    async def respawn(self) -> None:
        """Start the worker again, as it was launched; its metrics carry on."""
        assert self.launch_args is not None
        if not self.terminating:
            await self.spawn(*self.launch_args)

    def send(self, msg: wire.Request) -> bool:
        """Write one request line; False when the worker is gone."""
        proc = self.proc
        if proc is None or proc.returncode is not None or proc.stdin is None:
            return False
        try:
            proc.stdin.write(orjson.dumps(msg) + b"\n")
        except (BrokenPipeError, ConnectionResetError, RuntimeError):
            return False
        return True

    async def _read(self) -> None:
        """Route everything the worker says; on EOF, the worker is gone."""
        proc = self.proc
        assert proc is not None and proc.stdout is not None
        last_error: str | None = None
        while True:
            try:
                line = await proc.stdout.readline()
            except (ValueError, asyncio.LimitOverrunError):
                last_error = "the worker sent a line too long to read"
                break
            if not line:
                break
            try:
                msg: wire.FromWorker = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if msg["kind"] == "progress":
                self.progress = msg["progress"]
                self.stage = msg["stage"]
            elif msg["kind"] == "ready":
                self.info = msg["info"]
                self.state = "ready"
                self.progress = 1.0
                self.stage = "ready"
                self.launch_seconds = time.perf_counter() - self.spawned_at
                stages = self.info.pop("stages", None) or {}
                # what the worker did not time is its process: fork or Python start, xitui's imports, the pipe
                self.stages = {"process": max(0.0, self.launch_seconds - sum(stages.values())), **stages}
                self.settled.set()
            elif msg["kind"] == "load_error":
                last_error = msg["message"]
            else:
                queue = self.pending.get(msg["id"])
                if queue is not None:
                    queue.put_nowait(msg)
        code = await proc.wait()
        if self.terminating:
            return
        reported = last_error
        if last_error is None:
            how = "ended" if code is None else f"was killed by {exit_cause(code)}" if code < 0 else \
                f"exited with code {code}"
            tail = log_tail(self.log_path)
            last_error = f"the worker process {how}" + (f" ({tail})" if tail else "")
        was = self.state
        self.exit_code = code
        self.state = "error"
        self.error = last_error
        self.stage = "error"
        self.settled.set()  # whoever waits on this worker learns that it is gone
        log.warning("model %s (%s): %s", self.name, was, last_error)
        answer = self.on_exit(self, was, code, reported) if self.on_exit is not None else None
        message, status = answer or (f"model {self.uid!r} failed: {last_error}", 500)
        for rid, queue in list(self.pending.items()):
            queue.put_nowait(wire.failed(rid, message, status))

    async def stop(self, why: str = "was terminated") -> None:
        self.terminating = True
        proc = self.proc
        if proc is None:
            return
        for rid, queue in list(self.pending.items()):
            queue.put_nowait(wire.failed(rid, f"model {self.uid!r} {why}", 400))
        if proc.returncode is None:
            if self.state == "launching":
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
        if self.reader is not None:
            await asyncio.gather(self.reader, return_exceptions=True)
        if not self.settled.is_set():  # a launch waiting for this replica gets its answer
            self.state = "error"
            self.error = "it was terminated while launching"
            self.settled.set()
