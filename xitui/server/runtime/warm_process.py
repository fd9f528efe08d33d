"""The server's side of the warm worker (xitui/worker/warm_worker.py): start it, fork workers from it, replace it.

A launch asks `WarmProcess.fork`; None means "start a worker the cold way": the warm worker is still
importing, is off, has died, or the launch sets environment variables that libraries read at import
(only XITUI_* ones, read by xitui at load time, can be given to a forked worker). A launch never waits
for the warm worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import orjson

from xitui import wire
from xitui.core.machine.python_command import python
from xitui.server.runtime.worker_process import LINE_LIMIT, process_rss

log = logging.getLogger("xitui.supervisor")

#: Deaths while importing, one after another, after which the warm worker is left off (and why is shown).
MAX_FAILED_STARTS = 3


class ForkedStdin:
    """The write end of a forked worker's stdin, as `Replica` uses it (write, close)."""

    def __init__(self, transport: asyncio.WriteTransport):
        self.transport = transport

    def write(self, data: bytes) -> None:
        if self.transport.is_closing():
            raise BrokenPipeError("the worker's stdin is closed")
        self.transport.write(data)

    def close(self) -> None:
        self.transport.close()


class ForkedProcess:
    """A worker forked by the warm worker, with the parts of asyncio.subprocess.Process `Replica` uses.

    It is the warm worker's child, not ours: its exit status comes from the warm worker's note, or, if
    the warm worker died first, is unknown (None) once the process is gone."""

    def __init__(self, pid: int, stdin: ForkedStdin, stdout: asyncio.StreamReader):
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.returncode: int | None = None
        self.ended = asyncio.Event()

    def exited(self, code: int | None) -> None:
        if not self.ended.is_set():
            self.returncode = code
            self.ended.set()

    async def wait(self) -> int | None:
        await self.ended.wait()
        return self.returncode

    def kill(self) -> None:
        if not self.ended.is_set():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    async def watch_orphan(self) -> None:
        """After the warm worker died: poll until the process is gone (or a zombie nobody reaps)."""
        import psutil

        while not self.ended.is_set():
            try:
                if psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE:
                    break
            except psutil.NoSuchProcess:
                break
            await asyncio.sleep(0.1)
        self.exited(None)


class WarmProcess:
    """A process with the engines' libraries already imported, forked for each launch (seconds saved per launch)."""

    def __init__(self, engines: list[str], log_path: Path):
        self.error: str | None = None
        if engines and not sys.platform.startswith("linux"):
            # fork after importing torch is Linux's to do safely (macOS frameworks refuse it), and the
            # descriptors travel over a SOCK_SEQPACKET socket
            engines, self.error = [], "the warm worker runs on Linux only: launches start cold"
        self.engines = engines
        self.log_path = log_path
        self.state = "off" if not engines else "stopped"
        self.pid: int | None = None
        self.loaded: list[str] = []
        self.failed: dict[str, str] = {}
        self.import_seconds: float | None = None
        self.forks = 0
        self.restarts = 0
        self._failed_starts = 0
        self._sock: socket.socket | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._answers: dict[int, asyncio.Future[wire.Forked]] = {}
        self._children: dict[int, ForkedProcess] = {}
        #: Exit notes that came before their fork's answer was taken up (a worker that died at once).
        self._early_exits: dict[int, int | None] = {}
        self._stopping = False
        self._lock = asyncio.Lock()

    def describe(self) -> dict[str, Any]:
        rss = process_rss(self.pid) if self.state in ("starting", "ready") else None
        return {"state": self.state, "engines": self.engines, "loaded": self.loaded, "failed": self.failed,
                "pid": self.pid, "memory_rss": rss, "import_seconds": self.import_seconds, "forks": self.forks,
                "restarts": self.restarts, "error": self.error}

    async def start(self) -> None:
        if not self.engines or self._stopping:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.state = "starting"
        self.loaded, self.failed, self.import_seconds = [], {}, None
        with open(self.log_path, "ab") as log_file:
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *python("-m", "xitui.worker.warm_worker", str(theirs.fileno()), ",".join(self.engines)),
                    stdin=asyncio.subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                    pass_fds=(theirs.fileno(),),
                    # its own session: a signal to the server's process group (a terminal's Ctrl-C, a service
                    # manager's SIGTERM) is the server's to handle; the warm worker ends when its socket closes
                    start_new_session=True,
                )
            except OSError as exc:
                self.state, self.error = "off", f"could not start: {exc}"
                ours.close()
                return
            finally:
                theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self.pid = self._proc.pid
        self._reader = asyncio.create_task(self._read(ours, self._proc))

    async def _read(self, sock: socket.socket, proc: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await loop.sock_recv(sock, 65536)
            except OSError:
                data = b""
            if not data:
                break
            msg: wire.FromWarm = orjson.loads(data)
            if msg["kind"] == "exited":
                child = self._children.pop(msg["pid"], None)
                if child is not None:
                    child.exited(msg["code"])
                else:
                    self._early_exits[msg["pid"]] = msg["code"]
            elif msg["kind"] == "forked":
                answer = self._answers.pop(msg["id"], None)
                if answer is not None and not answer.done():
                    answer.set_result(msg)
            elif msg["kind"] == "warm":
                self.state = "ready"
                self.loaded, self.failed = msg["engines"], msg["failed"]
                self.import_seconds = msg["seconds"]
                self._failed_starts = 0
                log.info("warm worker ready in %.1f s (%s)", self.import_seconds or 0,
                         ", ".join(self.loaded) or "no engine imported")
        code = await proc.wait()
        sock.close()
        was = self.state
        self.state = "stopped"
        self.pid = None
        for rid, answer in self._answers.items():
            if not answer.done():
                answer.set_result({"kind": "forked", "id": rid, "error": "the warm worker ended"})
        self._answers.clear()
        for child in self._children.values():  # ours no longer: watch them until they are gone
            asyncio.get_running_loop().create_task(child.watch_orphan())
        self._children.clear()
        if self._stopping:
            return
        self._failed_starts += was == "starting"
        why = f"killed by signal {-code}" if code < 0 else f"exited with code {code}"
        if self._failed_starts >= MAX_FAILED_STARTS:
            self.state = "off"
            self.error = f"it {why} while importing, {self._failed_starts} times: see {self.log_path}"
            log.warning("warm worker: %s; launches start cold", self.error)
            return
        log.warning("warm worker %s; starting another (launches start cold meanwhile)", why)
        self.restarts += 1
        await asyncio.sleep(0.2 * self._failed_starts)
        await self.start()

    async def fork(self, log_path: Path, envs: dict[str, str]) -> ForkedProcess | None:
        """A worker forked from the warm one, or None (start it cold): never waits for the warm one to start."""
        if self.state != "ready" or any(not key.startswith("XITUI_") for key in envs):
            return None
        async with self._lock:  # one fork at a time: descriptors and answers pair up in order
            sock = self._sock
            if self.state != "ready" or sock is None:
                return None
            log_path.parent.mkdir(parents=True, exist_ok=True)
            opened: list[int] = []  # every descriptor opened here is closed on every path
            try:
                log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
                opened.append(log_fd)
                stdin_r, stdin_w = os.pipe()
                opened += [stdin_r, stdin_w]
                stdout_r, stdout_w = os.pipe()
            except OSError:
                for fd in opened:
                    os.close(fd)
                raise
            rid = next(self._ids)
            answer = asyncio.get_running_loop().create_future()
            self._answers[rid] = answer
            try:
                fork: wire.ForkRequest = {"kind": "fork", "id": rid, "envs": envs}
                socket.send_fds(sock, [orjson.dumps(fork)], [stdin_r, stdout_w, log_fd])
                reply = await asyncio.wait_for(answer, timeout=10)
            except (OSError, asyncio.TimeoutError) as exc:
                reply = {"kind": "forked", "id": rid, "error": f"{type(exc).__name__}: {exc}"}
            finally:
                self._answers.pop(rid, None)
                for fd in (stdin_r, stdout_w, log_fd):
                    os.close(fd)
            pid = reply.get("pid")
            if pid is None:
                os.close(stdin_w)
                os.close(stdout_r)
                log.warning("warm worker could not fork (%s): starting cold", reply.get("error"))
                return None
            self.forks += 1
            try:
                process = await _connect(pid, stdin_w, stdout_r)
            except BaseException:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                raise
            if process.pid in self._early_exits:
                process.exited(self._early_exits.pop(process.pid))
            else:
                self._children[process.pid] = process
            return process

    async def stop(self) -> None:
        self._stopping = True
        if self._sock is not None:
            # the warm worker exits when its socket ends. shutdown, not only close: with close alone the peer
            # saw no end while the reader task was waiting on the socket, and was killed after 3 s (every
            # server stop took 3.4 s; 0.4 s now)
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        proc = self._proc
        if proc is not None and proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), timeout=3)
            except asyncio.TimeoutError:
                proc.kill()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)
        self.state = "off" if not self.engines else "stopped"


async def _connect(pid: int, stdin_w: int, stdout_r: int) -> ForkedProcess:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=LINE_LIMIT, loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                                 os.fdopen(stdout_r, "rb", buffering=0))
    transport, _ = await loop.connect_write_pipe(asyncio.Protocol, os.fdopen(stdin_w, "wb", buffering=0))
    return ForkedProcess(pid, ForkedStdin(transport), reader)

