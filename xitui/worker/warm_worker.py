"""The warm worker: one process that imports the engines' libraries once, then forks a worker per launch.

A launch from here pays for reading weights, not for starting Python and importing torch (3.5 s for
sentence-transformers on the build machine). Forking is safe because nothing here has run a model: no
thread pool exists yet (torch's and OpenMP's start at the first operation, in the worker) and CUDA is
never initialised (torch.cuda is not touched), so each worker sets up its own threads and device as a
freshly started one does; the forked workers share the imported libraries' pages with this process.

Protocol, over the AF_UNIX SOCK_SEQPACKET socket whose descriptor is argv[1] (one JSON object a packet; the
types are xitui/wire.py's): to the server, once the libraries are imported, `warm`; from the server, `fork`
carrying three descriptors (the new worker's stdin, protocol pipe and log), answered by `forked` with its
pid or an error; to the server, when a worker ends, `exited` with its status.
The socket's end (the server exited) ends this process; the workers end on their own when their stdin
closes.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import select
import signal
import socket
import sys
import threading
import time
import traceback
from typing import Any

import orjson

from xitui import wire

#: What each engine's worker imports, in order (the worker's own modules last, so they find them loaded).
#: transformers imports its model-loading machinery at the first from_pretrained (and compiles its weight
#: renaming patterns then): a third of MiniLM's load when left to the worker.
TRANSFORMERS = ["torch", "safetensors.torch", "transformers", "transformers.modeling_utils",
                "transformers.models.auto.modeling_auto", "transformers.models.auto.tokenization_auto",
                "transformers.generation.utils"]
PRELOAD = {
    "llama.cpp": ["llama_cpp", "xitui.backends.llamacpp", "xitui.backends.llamacpp_batch"],
    "transformers": [*TRANSFORMERS, "xitui.backends.transformers"],
    "sentence_transformers": [*TRANSFORMERS, "sentence_transformers", "xitui.backends.sentence_transformers"],
}
COMMON = ["xitui.worker.process", "xitui.backends.base", "xitui.core.specs.spec", "xitui.core.specs.bundled",
          "xitui.worker.chat_prompt"]


def preload(engines: list[str]) -> tuple[list[str], dict[str, str]]:
    """Import each engine's modules; an engine whose libraries fail to import is left to its workers."""
    loaded: list[str] = []
    failed: dict[str, str] = {}
    for module in COMMON:
        importlib.import_module(module)
    for engine in engines:
        try:
            for module in PRELOAD[engine]:
                importlib.import_module(module)
        except Exception as exc:  # not installed, or broken: a worker for it imports (and reports) itself
            failed[engine] = f"{type(exc).__name__}: {exc}"
        else:
            loaded.append(engine)
    return loaded, failed


def preload_when_idle(engines: list[str], sock: socket.socket | None = None) -> tuple[list[str], dict[str, str]]:
    """`preload` on a thread of the lowest priority (SCHED_IDLE): the imports take seconds of a core at
    server start, just when a restored or first model is loading and answering, and must not slow it
    (measured: a GGUF's first 128 tokens at 34-40 tokens/s beside normal-priority imports, 78 beside these,
    75-78 with no warm worker). The policy is the thread's own: the main thread, which forks the workers,
    keeps the normal one. Meanwhile it watches `sock`: a server that stops before the imports are done
    closes it, and this process ends at once (it waited out the server's 3 s before)."""
    done: dict[str, Any] = {}

    def run() -> None:
        with contextlib.suppress(AttributeError, OSError):  # not Linux, or not allowed: normal priority
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        try:
            done["result"] = preload(engines)
        except BaseException as exc:  # noqa: BLE001 - raised again in the main thread
            done["error"] = exc

    thread = threading.Thread(target=run, name="preload")
    thread.start()
    while thread.is_alive() and sock is not None:
        readable, _, _ = select.select([sock.fileno()], [], [], 0.5)
        if readable:
            with contextlib.suppress(InterruptedError):
                if not sock.recv(1, socket.MSG_PEEK):
                    os._exit(0)  # the server is gone
            break  # a packet before `warm` (none is sent): it waits for serve()
    thread.join()
    if "error" in done:
        raise done["error"]
    return done["result"]


def name_process(name: str) -> None:
    """What `ps`/`top` show for this process (Linux; elsewhere nothing happens)."""
    with contextlib.suppress(OSError), open("/proc/self/comm", "w") as fh:
        fh.write(name[:15])


class WarmWorker:
    """The warm worker's own side: import the engines once, then fork a worker for each launch asked for."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_w, False)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # the wakeup pipe is what matters
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C in the server's terminal is the server's to act on

    def send(self, obj: wire.FromWarm) -> None:
        try:
            self.sock.send(orjson.dumps(obj))
        except OSError:  # the server is gone: so are we
            os._exit(0)

    def serve(self) -> None:
        while True:
            ready, _, _ = select.select([self.sock.fileno(), self.wake_r], [], [])
            if self.wake_r in ready:
                os.read(self.wake_r, 4096)
                self.reap()
            if self.sock.fileno() in ready:
                try:
                    data, fds, _, _ = socket.recv_fds(self.sock, 65536, 8)
                except InterruptedError:
                    continue
                if not data:
                    return  # the server is gone
                self.handle(orjson.loads(data), fds)

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            self.send({"kind": "exited", "pid": pid, "code": code})

    def handle(self, request: wire.ForkRequest, fds: list[int]) -> None:
        rid = request["id"]
        if request["kind"] != "fork" or len(fds) != 3:
            for fd in fds:
                os.close(fd)
            self.send({"kind": "forked", "id": rid, "error": "a fork request carries three descriptors"})
            return
        try:
            pid = os.fork()
        except OSError as exc:
            self.send({"kind": "forked", "id": rid, "error": f"fork failed: {exc}"})
        else:
            if pid == 0:
                self.become_worker(fds, request["envs"])
            self.send({"kind": "forked", "id": rid, "pid": pid})
        for fd in fds:
            os.close(fd)

    def become_worker(self, fds: list[int], envs: dict[str, str]) -> None:
        """In the child: the three descriptors become stdin, stdout and stderr, then the worker runs."""
        code = 1
        try:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.default_int_handler)
            for target, fd in enumerate(fds):
                os.dup2(fd, target)
            for fd in {*fds, self.wake_r, self.wake_w} - {0, 1, 2}:
                os.close(fd)
            self.sock.close()
            os.environ.update(envs)
            name_process("xitui-worker")
            from xitui.worker.process import main

            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            try:
                sys.stderr.flush()
            finally:
                os._exit(code)


def main() -> None:
    sock = socket.socket(fileno=int(sys.argv[1]))
    engines = [e for e in sys.argv[2].split(",") if e] if len(sys.argv) > 2 else []
    name_process("xitui-warm")
    warm = WarmWorker(sock)
    start = time.perf_counter()
    loaded, failed = preload_when_idle(engines, sock)
    warm.send({"kind": "warm", "engines": loaded, "failed": failed, "seconds": time.perf_counter() - start})
    warm.serve()
    # the server is gone. Not a normal exit: finalising an interpreter that imported torch and transformers
    # takes 1.5 s, and every server stop waited for it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
