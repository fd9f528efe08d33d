"""What a worker process runs: load one model, then answer the server's requests on stdin/stdout (see the
package docstring for the protocol). `python -m xitui.worker` and a fork of the warm worker both call `main`."""

from __future__ import annotations

import base64
import os
import queue
import sys
import threading
import time
import traceback
from functools import partial
from typing import Any, TextIO

import orjson

from xitui.backends.base import Backend, Finish, GenerateParams, RequestError
from xitui.core.errors import XituiError
from xitui.core.input_size import cut, readable_chars

#: Dynamic batching of embeddings: gather requests arriving within BATCH_GAP of each other, for at most
#: BATCH_WAIT in all, and at most MAX_BATCH texts.
BATCH_GAP = float(os.environ.get("XITUI_BATCH_GAP_MS", "1.5")) / 1000
BATCH_WAIT = float(os.environ.get("XITUI_BATCH_WAIT_MS", "20")) / 1000
MAX_BATCH = int(os.environ.get("XITUI_MAX_BATCH", "64"))


class Channel:
    """The protocol pipe: the real stdout, kept apart from what C libraries print to fd 1."""

    def __init__(self) -> None:
        self._fd = os.dup(1)
        os.dup2(2, 1)  # llama.cpp and friends print to fd 1: send that to the log instead
        sys.stdout = sys.stderr
        self._lock = threading.Lock()

    def send(self, obj: dict[str, Any]) -> None:
        data = memoryview(orjson.dumps(obj) + b"\n")
        with self._lock:  # one message, one write: nothing interleaves
            while data:
                data = data[os.write(self._fd, data):]


def note(text: str) -> None:
    """A line of the worker's own in its log (stderr), stamped as the server's log is."""
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} xitui worker {os.getpid()}: {text}\n")
    sys.stderr.flush()


#: What the log's line about a loaded model says besides its stages, in this order, when the backend tells it.
LOADED_FIELDS = ("engine", "device", "context_length", "n_parallel", "kv_cells", "n_gpu_layers", "n_threads",
                 "dimensions", "batching", "chat_format", "tool_format")


def failure(exc: Exception) -> dict[str, Any]:
    """A request's error message: the user's errors with their status, anything else a 500 (traced to the log)."""
    if isinstance(exc, XituiError):
        return {"error": str(exc), "status": exc.status_code}
    traceback.print_exc()
    return {"error": f"the model failed: {type(exc).__name__}: {exc}", "status": 500}


class StageClock:
    """Seconds each launch stage takes, told apart by the words the progress line starts with."""

    STAGES = (("fetching", "download"), ("downloading", "download"), ("assembling", "download"),
              ("importing", "import"), ("loading", "weights"), ("warming", "warm-up"))

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.current: str | None = None
        self.since = time.perf_counter()

    def enter(self, text: str) -> None:
        key = next((k for prefix, k in self.STAGES if text.startswith(prefix)), self.current)
        if key != self.current:
            self.stop()
            self.current = key

    def stop(self) -> None:
        now = time.perf_counter()
        if self.current is not None:
            self.seconds[self.current] = self.seconds.get(self.current, 0.0) + now - self.since
        self.since = now


class Worker:
    """The model a worker process serves, and the loop that answers the server's requests."""

    def __init__(self, channel: Channel, settings: dict[str, Any]):
        self.channel = channel
        self.settings = settings
        self.requests: queue.Queue[dict[str, Any]] = queue.Queue()
        #: Requests prepared for the batch engine (serve_batched): rid, prompt tokens, params, stop ids.
        self.ready: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.cancelled: set[int] = set()
        self.backend: Any = None
        #: Requests in the last embedding batch: how many to expect in the next one.
        self.last_batch = 1
        self.family: Any = None
        #: Readers of tool calls, for the requests that gave tools (worker/tools.py).
        self.readers: dict[int, Any] = {}

    # --- loading --------------------------------------------------------------------------------

    def load(self) -> None:
        from xitui.backends import load_backend
        from xitui.core import bundled

        settings = self.settings

        shown = [0.0]
        clock = StageClock()

        def progress(value: float, stage: str) -> None:
            shown[0] = max(shown[0], value)  # a bar never runs backwards (download, then loading)
            clock.enter(stage)
            self.channel.send({"event": "progress", "progress": shown[0], "stage": stage})

        if settings["model_type"] == "LLM":
            from xitui.core.spec import parse_llm

            self.family = parse_llm(settings["registration"], builtin=settings["registration"].get("is_builtin", False))
        bundled.prepare(settings["model_name"], progress)
        if not settings.get("model_path"):
            from xitui.core.download import download

            gguf = settings.get("model_format") == "ggufv2"
            settings["model_path"] = download(
                settings["model_id"], progress, file_name=settings.get("file_name") if gguf else None,
                revision=settings.get("model_revision"),
            )
        progress(0.1, "importing " + settings["engine"])
        self.backend = load_backend(settings["engine"])
        self.backend._send = self.deliver
        info = self.backend.load(settings, progress)
        if type(self.backend).warm_up is not Backend.warm_up:
            progress(0.95, "warming up")
            self.backend.warm_up()  # (may start the backend's batching engine: it adds to `info`)
        clock.stop()
        info["stages"] = clock.seconds
        if self.family is not None and "chat" in self.family.model_ability:
            from xitui.worker.chat import chat_format

            info["chat_format"] = chat_format(self.family, self.backend.model_chat_template)
            if "tools" in self.family.model_ability:
                from xitui.worker.tools import tool_format

                info["tool_format"] = tool_format(self.family, self.backend.model_chat_template)
        stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in clock.seconds.items())
        told = ", ".join(f"{key} {info[key]}" for key in LOADED_FIELDS if info.get(key) not in (None, ""))
        note(f"{settings['model_name']} loaded from {settings['model_path']} ({stages}): {told}")
        self.channel.send({"event": "ready", "info": info})

    # --- serving --------------------------------------------------------------------------------

    def read_requests(self, stream: TextIO) -> None:
        """Reader thread: queue requests, note cancellations at once, stop the process at EOF."""
        for line in stream:
            try:
                req = orjson.loads(line)
            except ValueError:
                continue
            if req.get("op") == "cancel":
                self.cancelled.add(req["id"])
                self.readers.pop(req["id"], None)
            else:
                self.requests.put(req)
        # The server closed our stdin (terminate, or it died): nothing left to serve.
        os._exit(0)

    def serve_batched(self) -> None:
        """Requests join the running batch as they come; one engine step between reads of what is ready.

        A request is made ready on its own thread (`prepare_requests`): its chat template rendered, its
        prompt tokenized, its grammar compiled. Those take time that grows with what the request sends, and
        on the engine's thread every running stream would wait for them."""
        engine = self.backend.engine
        engine.cancelled = self.cancelled  # the reader thread notes cancellations here
        threading.Thread(target=self.prepare_requests, daemon=True, name="prepare").start()
        while True:
            block = not engine.busy
            while True:
                try:
                    rid, tokens, params, stop_ids = self.ready.get(block=block)
                except queue.Empty:
                    break
                block = False
                try:
                    engine.submit(rid, tokens, params, stop_ids)
                except Exception as exc:
                    self.readers.pop(rid, None)
                    self.channel.send({"id": rid, **failure(exc)})
            try:
                engine.step()
            except Exception as exc:  # the worker lives on: the requests of this batch get the error
                traceback.print_exc()
                engine.fail_all(f"the model failed: {type(exc).__name__}: {exc}")

    def prepare_requests(self) -> None:
        """The preparing thread: each request in turn, ready for the engine or refused at once."""
        while True:
            self.run_guarded_batched(self.requests.get())

    def run_guarded_batched(self, req: dict[str, Any]) -> None:
        """Make a request ready for the engine; a refusal goes back at once. Its cancellation is the engine's
        to clear (when the slot ends), not this call's: the request is still running when it returns."""
        try:
            self.handle(req)
        except Exception as exc:
            self.readers.pop(req["id"], None)
            self.channel.send({"id": req["id"], **failure(exc)})

    def serve(self) -> None:
        if getattr(self.backend, "engine", None) is not None:
            return self.serve_batched()
        deferred: list[dict[str, Any]] = []
        while True:
            req = deferred.pop() if deferred else self.requests.get()
            if req.get("op") == "embed":
                batch = self.gather_embeds(req, deferred)
                self.run_guarded(batch, partial(self.embed, batch))
            else:
                self.run_guarded([req], partial(self.handle, req))

    def gather_embeds(self, first: dict[str, Any], deferred: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Dynamic batching, bounded by BATCH_WAIT and MAX_BATCH texts.

        Until the batch is as large as the last one, wait for more (under steady load the same clients
        come back); past that, take requests only while they keep arriving within BATCH_GAP of each
        other. A lone client pays one gap; after a quiet spell the expectation falls back to one.
        """
        batch = [first]
        texts = len(first.get("input") or [])
        deadline = time.perf_counter() + BATCH_WAIT
        while texts < MAX_BATCH:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                nxt = self.requests.get(timeout=left if len(batch) < self.last_batch else min(BATCH_GAP, left))
            except queue.Empty:
                break
            if nxt.get("op") != "embed":
                deferred.append(nxt)
                break
            batch.append(nxt)
            texts += len(nxt.get("input") or [])
        self.last_batch = len(batch)
        return batch

    def run_guarded(self, reqs: list[dict[str, Any]], work: Any) -> None:
        """Run `work`; if it raises, each request in `reqs` gets the error and the worker goes on."""
        try:
            work()
        except Exception as exc:
            answer = failure(exc)
            for req in reqs:
                self.channel.send({"id": req["id"], **answer})
        finally:
            for req in reqs:
                self.cancelled.discard(req["id"])
                self.readers.pop(req["id"], None)

    def handle(self, req: dict[str, Any]) -> None:
        rid = req["id"]
        if rid in self.cancelled:
            return
        if req["op"] in ("generate", "chat"):
            self.generate(rid, req)
        elif req["op"] == "rerank":
            self.rerank(rid, req)
        else:
            self.channel.send({"id": rid, "error": f"unknown operation {req['op']!r}", "status": 400})

    def rerank(self, rid: int, req: dict[str, Any]) -> None:
        """Score each document against the query (each text as far as the model reads it); the server sorts
        and cuts (top_n)."""
        if not getattr(self.backend, "reranks", False):
            raise RequestError("this model is not a rerank model")
        scores, tokens = self.backend.rerank(req["query"], req["documents"])
        self.channel.send({"id": rid, "result": {"scores": scores, "tokens": tokens}})

    def generate(self, rid: int, req: dict[str, Any]) -> None:
        params = GenerateParams.from_request(req.get("params") or {})
        family = self.family
        prompt = req.get("prompt")
        if req["op"] == "chat":
            from xitui.worker import tools
            from xitui.worker.chat import chat_prompt, validate_messages

            messages = validate_messages(req.get("messages"))
            template = self.backend.model_chat_template
            messages, extra, calls = tools.prepare(req, messages, family, template, self.backend, params)
            extra.update(req.get("template_kwargs") or {})
            prompt = chat_prompt(family, template, messages, self.backend.bos_token, self.backend.eos_token, **extra)
            thoughts = tools.thought_reader(family, prompt)
            if calls is not None or thoughts is not None:
                self.readers[rid] = tools.AnswerSplit(thoughts, calls)
        if not isinstance(prompt, str):
            raise RequestError("prompt: must be a string")
        if params.constraint:
            if params.ignore_eos:
                raise RequestError("ignore_eos: an answer of a given form ends where the form does; leave it out")
            params.grammar = self.backend.grammar_for(params.constraint)
        # The spec's stop words and ids apply to every request, on top of the request's own.
        params.stop = list(dict.fromkeys([*params.stop, *(family.stop or [])]))
        params.stop_token_ids = list(dict.fromkeys([*params.stop_token_ids, *(family.stop_token_ids or [])]))
        engine = getattr(self.backend, "engine", None)
        if params.logprobs is not None and engine is None:
            raise RequestError("logprobs: served for GGUF models (llama.cpp); this model's engine does not give them")
        if engine is not None:
            if params.max_tokens is not None and params.max_tokens <= 0:
                params.max_tokens = None
            stop_ids = set(params.stop_token_ids) | self.backend.special_stop_ids(params.stop)
            self.ready.put((rid, self.backend.prompt_tokens(prompt), params, stop_ids))
            return
        start = time.perf_counter()
        first: float | None = None
        for piece in self.backend.generate(prompt, params, lambda: rid in self.cancelled):
            if isinstance(piece, Finish):
                end = time.perf_counter()
                ttft = (first or end) - start
                decode = end - (first or end)
                tps = (piece.completion_tokens - 1) / decode if decode > 0 and piece.completion_tokens > 1 else 0.0
                self.deliver(rid, {
                    "done": {
                        "finish_reason": piece.reason,
                        "usage": {
                            "prompt_tokens": piece.prompt_tokens,
                            "completion_tokens": piece.completion_tokens,
                            "total_tokens": piece.prompt_tokens + piece.completion_tokens,
                        },
                        "ttft": ttft,
                        "tokens_per_s": tps,
                    },
                })
                return
            if first is None:
                first = time.perf_counter()
            self.deliver(rid, {"text": piece})

    def deliver(self, rid: int, msg: dict[str, Any]) -> None:
        """Send a generation's message; a thinking model's reasoning and a tool call are taken out of the
        answer's text first (worker/tools.py). Never raises into the engine that calls it: when reading one
        request's output fails (a call nested a thousand levels deep...), that request alone ends with the
        error and is cancelled, and every other request of the batch goes on."""
        try:
            self._deliver(rid, msg)
        except Exception as exc:
            traceback.print_exc()
            self.readers.pop(rid, None)
            if "done" not in msg and "error" not in msg:
                self.cancelled.add(rid)  # the engine ends it quietly at its next step
            self.channel.send({"id": rid, "error": f"the model's answer could not be read: {type(exc).__name__}",
                               "status": 500})

    def _deliver(self, rid: int, msg: dict[str, Any]) -> None:
        split = self.readers.get(rid)
        if split is None:
            self.channel.send({"id": rid, **msg})
            return
        if "text" in msg:
            if msg.get("logprobs"):
                self.channel.send({"id": rid, "text": "", "logprobs": msg["logprobs"]})
            out = split.feed(msg["text"])
        elif "done" in msg:
            out = split.finish()
        else:  # an error: the request is over
            self.readers.pop(rid, None)
            self.channel.send({"id": rid, **msg})
            return
        for part in out:
            self.channel.send({"id": rid, **part})
        if "done" in msg:
            self.readers.pop(rid, None)
            done = dict(msg["done"])
            if split.called:
                done["finish_reason"] = "tool_calls"
            self.channel.send({"id": rid, "done": done})

    def embed(self, batch: list[dict[str, Any]]) -> None:
        """One encode call for every text of every request in the batch; answers split back out."""
        backend = self.backend
        limit = backend.max_input_tokens
        accepted: list[tuple[dict[str, Any], list[str], list[int], bool]] = []
        for req in batch:
            texts = req.get("input")
            if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
                self.channel.send({"id": req["id"], "error": "input: must be a string or a non-empty list of strings",
                                   "status": 400})
                continue
            # no tokenizer sees more of a text than the model can read (core/input_size)
            longest = max(len(t) for t in texts)
            if not req.get("truncate", True) and longest > readable_chars(limit):
                self.channel.send({"id": req["id"], "status": 400, "error": (
                    f"an input is {longest} characters long, more than the {limit} tokens this model reads "
                    "(send truncate=true to cut it)")})
                continue
            texts = [cut(t, limit) for t in texts]
            counts = backend.token_counts(texts)
            if not req.get("truncate", True) and max(counts) > limit:
                self.channel.send({"id": req["id"], "status": 400, "error": (
                    f"an input is {max(counts)} tokens long; this model reads at most {limit} "
                    "(send truncate=true to cut it)")})
                continue
            accepted.append((req, texts, counts, longest > readable_chars(limit)))
        if not accepted:
            return
        everything = [t for _, texts, _, _ in accepted for t in texts]
        vectors = backend.embed(everything)  # float32, one row per text
        start = 0
        for req, texts, counts, was_cut in accepted:
            mine = vectors[start:start + len(texts)]
            start += len(texts)
            self.channel.send({"id": req["id"], "result": {
                # little-endian float32, base64: what OpenAI's encoding_format=base64 sends, and cheap to pass
                "vectors_b64": base64.b64encode(mine.astype("<f4").tobytes()).decode(),
                "count": len(texts),
                "tokens": sum(min(c, limit) for c in counts),
                "truncated": was_cut or max(counts) > limit,
                "batch": len(everything),
            }})


def main() -> None:
    channel = Channel()
    stdin = sys.stdin
    settings = orjson.loads(stdin.readline())
    worker = Worker(channel, settings)
    try:
        worker.load()
    except Exception as exc:
        if not isinstance(exc, XituiError):
            traceback.print_exc()
        message = str(exc) if isinstance(exc, XituiError) else f"{type(exc).__name__}: {exc}"
        if isinstance(exc, MemoryError):
            message = "out of memory while loading the model"
        note(f"could not load {settings.get('model_name')}: {message}")
        channel.send({"event": "error", "message": message})
        sys.stderr.flush()
        os._exit(1)
    threading.Thread(target=worker.read_requests, args=(stdin,), daemon=True, name="requests").start()
    worker.serve()

