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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from xitui import wire
from xitui.backends.base import Backend, Finish, GenerateParams, RequestError, request_images
from xitui.core.chat_format.input_size import cut, readable_chars
from xitui.core.errors import XituiError

if TYPE_CHECKING:
    from xitui.core.specs.spec import LLMFamily
    from xitui.worker.tools import AnswerSplit

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

    def send(self, obj: wire.FromWorker) -> None:
        data = memoryview(orjson.dumps(obj) + b"\n")
        with self._lock:  # one message, one write: nothing interleaves
            while data:
                data = data[os.write(self._fd, data):]


def note(text: str) -> None:
    """A line of the worker's own in its log (stderr), stamped as the server's log is."""
    sys.stderr.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} xitui worker {os.getpid()}: {text}\n")
    sys.stderr.flush()


#: What the log's line about a loaded model says besides its stages, in this order, when the backend tells it.
LOADED_FIELDS = ("engine", "converted", "device", "context_length", "n_parallel", "kv_cells", "n_gpu_layers",
                 "n_threads", "speculative", "dimensions", "batching", "chat_format", "tool_format", "projector")


def failure(rid: int, exc: Exception) -> wire.Failed:
    """A request's error message: the user's errors with their status, anything else a 500 (traced to the log)."""
    if isinstance(exc, XituiError):
        return wire.failed(rid, str(exc), exc.status_code)
    traceback.print_exc()
    return wire.failed(rid, f"the model failed: {type(exc).__name__}: {exc}")


class StageClock:
    """Seconds each launch stage takes, told apart by the words the progress line starts with."""

    STAGES = (("fetching", "download"), ("downloading", "download"), ("assembling", "download"),
              ("converting", "convert"), ("quantizing", "quantize"), ("using", "convert"),
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

    def __init__(self, channel: Channel, settings: wire.Settings):
        self.channel = channel
        self.settings = settings
        self.requests: queue.Queue[wire.Work] = queue.Queue()
        #: Requests prepared for the batch engine (serve_batched): rid, prompt tokens, params, stop ids.
        self.ready: queue.Queue[tuple[int, list[int], GenerateParams, set[int], dict[int, Any] | None]] = \
            queue.Queue()
        self.cancelled: set[int] = set()
        self.backend: Backend = Backend()  # until load
        #: Requests in the last embedding batch: how many to expect in the next one.
        self.last_batch = 1
        self.family: LLMFamily | None = None
        #: Readers of tool calls and reasoning, for the requests that need them (worker/tools.py).
        self.readers: dict[int, AnswerSplit] = {}

    # --- loading --------------------------------------------------------------------------------

    def load(self) -> None:
        from xitui.backends import load_backend
        from xitui.core.specs import bundled
        settings = self.settings

        shown = [0.0]
        clock = StageClock()

        def progress(value: float, stage: str) -> None:
            shown[0] = max(shown[0], value)  # a bar never runs backwards (download, then loading)
            clock.enter(stage)
            self.channel.send({"kind": "progress", "progress": shown[0], "stage": stage})

        if settings["model_type"] == "LLM":
            from xitui.core.specs.spec import parse_llm

            self.family = parse_llm(settings["registration"], builtin=bool(settings["registration"].get("is_builtin")))
        bundled.prepare(settings["model_name"], progress)
        if not settings["model_path"]:
            from xitui.core.model_files.download import download

            if not settings["model_id"]:
                raise XituiError("the launch names neither the model's files nor a model_id to download")
            gguf = settings["model_format"] in ("ggufv2", "ggmlv3")
            settings["model_path"] = download(
                settings["model_id"], progress, file_name=settings["file_name"] if gguf else None,
                revision=settings["model_revision"], hub=settings.get("model_hub", "huggingface"),
            )
            if settings.get("projector"):  # a vision model's projector, from the same repository
                settings["projector"] = download(
                    settings["model_id"], progress, file_name=settings["projector"],
                    revision=settings["model_revision"], hub=settings.get("model_hub", "huggingface"))
        converted = None
        if settings.get("convert_to"):
            from xitui.backends.conversion import converted_gguf, converted_projector, from_ggml, refuse_projector
            from xitui.core.config import home_dir
            from xitui.core.model_files.conversion import sees

            source = settings["model_path"] or ""
            if settings["model_format"] == "ggmlv3":
                settings["model_path"], how = from_ggml(source, home_dir(), settings["context_length"] or 2048,
                                                        progress)
            elif sees(source):  # its projector too, or it would answer as if blind
                # the two converter runs at once: each spends seconds importing torch and transformers on one
                # core (the test that launches the tiny test model so: 19.6 s one after the other, 14.6 s together)
                refuse_projector(source)  # (before the model's conversion, not after)
                with ThreadPoolExecutor(1, thread_name_prefix="projector") as aside:
                    projector = aside.submit(converted_projector, source, home_dir(), lambda *_: None)
                    settings["model_path"], how = converted_gguf(source, settings["convert_to"], home_dir(), progress)
                    settings["projector"] = projector.result()
            else:
                settings["model_path"], how = converted_gguf(source, settings["convert_to"], home_dir(), progress)
            what = "the GGML v3 file" if settings["model_format"] == "ggmlv3" else "the safetensors"
            converted = (f"GGUF {settings['convert_to']} of {what} ({how}); "
                         f"{settings.get('engine_reason', '')}")
        progress(0.1, "importing " + settings["engine"])
        self.backend = load_backend(settings["engine"])
        self.backend.set_sender(self.deliver)
        info = self.backend.load(settings, progress)
        if converted:
            info["converted"] = converted
        if type(self.backend).warm_up is not Backend.warm_up:
            progress(0.95, "warming up")
            self.backend.warm_up()  # (may start the backend's batching engine: it adds to `info`)
        clock.stop()
        info["stages"] = clock.seconds
        if self.family is not None and "chat" in self.family.model_ability:
            from xitui.worker.chat_prompt import chat_format

            info["chat_format"] = chat_format(self.family, self.backend.model_chat_template)
            if "tools" in self.family.model_ability:
                from xitui.worker.tools import tool_format

                try:
                    info["tool_format"] = tool_format(self.family, self.backend.model_chat_template)
                except RequestError:
                    info["tool_format"] = f"{self.family.tool_parser} (not read by xitui: no tools)"
        stages = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in clock.seconds.items())
        facts = dict(info)
        told = ", ".join(f"{key} {facts[key]}" for key in LOADED_FIELDS if facts.get(key) not in (None, ""))
        note(f"{settings['model_name']} loaded from {settings['model_path']} ({stages}): {told}")
        self.channel.send({"kind": "ready", "info": info})

    # --- serving --------------------------------------------------------------------------------

    def read_requests(self, stream: TextIO) -> None:
        """Reader thread: queue requests, note cancellations at once, stop the process at EOF."""
        for line in stream:
            try:
                req: wire.Request = orjson.loads(line)
            except ValueError:
                continue
            if req["kind"] == "cancel":
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
        assert engine is not None
        engine.cancelled = self.cancelled  # the reader thread notes cancellations here
        threading.Thread(target=self.prepare_requests, daemon=True, name="prepare").start()
        while True:
            block = not engine.busy
            while True:
                try:
                    rid, tokens, params, stop_ids, placed = self.ready.get(block=block)
                except queue.Empty:
                    break
                block = False
                try:
                    engine.submit(rid, tokens, params, stop_ids, placed)
                except Exception as exc:
                    self.readers.pop(rid, None)
                    self.channel.send(failure(rid, exc))
            try:
                engine.step()
            except Exception as exc:  # the worker lives on: the requests of this batch get the error
                traceback.print_exc()
                engine.fail_all(f"the model failed: {type(exc).__name__}: {exc}")

    def prepare_requests(self) -> None:
        """The preparing thread: each request in turn, ready for the engine or refused at once."""
        while True:
            self.run_guarded_batched(self.requests.get())

    def run_guarded_batched(self, req: wire.Work) -> None:
        """Make a request ready for the engine; a refusal goes back at once. Its cancellation is the engine's
        to clear (when the slot ends), not this call's: the request is still running when it returns."""
        try:
            self.handle(req)
        except Exception as exc:
            self.readers.pop(req["id"], None)
            self.channel.send(failure(req["id"], exc))

    def serve(self) -> None:
        if self.backend.engine is not None:
            return self.serve_batched()
        deferred: list[wire.Work] = []
        while True:
            req = deferred.pop() if deferred else self.requests.get()
            if req["kind"] == "embed":
                batch = self.gather_embeds(req, deferred)
                self.run_guarded(batch, partial(self.embed, batch))
            else:
                self.run_guarded([req], partial(self.handle, req))

    def gather_embeds(self, first: wire.EmbedRequest, deferred: list[wire.Work]) -> list[wire.EmbedRequest]:
        """Dynamic batching, bounded by BATCH_WAIT and MAX_BATCH texts.

        Until the batch is as large as the last one, wait for more (under steady load the same clients
        come back); past that, take requests only while they keep arriving within BATCH_GAP of each
        other. A lone client pays one gap; after a quiet spell the expectation falls back to one.
        """
        batch = [first]
        texts = len(first["input"])
        deadline = time.perf_counter() + BATCH_WAIT
        while texts < MAX_BATCH:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                nxt = self.requests.get(timeout=left if len(batch) < self.last_batch else min(BATCH_GAP, left))
            except queue.Empty:
                break
            if nxt["kind"] != "embed":
                deferred.append(nxt)
                break
            batch.append(nxt)
            texts += len(nxt["input"])
        self.last_batch = len(batch)
        return batch

    def run_guarded(self, reqs: Sequence[wire.Work], work: Callable[[], None]) -> None:
        """Run `work`; if it raises, each request in `reqs` gets the error and the worker goes on."""
        try:
            work()
        except Exception as exc:
            answer = failure(0, exc)
            for req in reqs:
                self.channel.send({**answer, "id": req["id"]})
        finally:
            for req in reqs:
                self.cancelled.discard(req["id"])
                self.readers.pop(req["id"], None)

    def handle(self, req: wire.Work) -> None:
        rid = req["id"]
        if rid in self.cancelled:
            return
        if req["kind"] == "generate" or req["kind"] == "chat":
            self.generate(req)
        elif req["kind"] == "rerank":
            self.rerank(req)
        elif req["kind"] == "embed" and self.backend.engine is not None:  # an LLM's own vectors (GGUF: `embed`)
            self.embed([req])
        else:
            self.channel.send(wire.failed(rid, f"{req['kind']} is not answered one request at a time", 400))

    def rerank(self, req: wire.RerankRequest) -> None:
        """Score each document against the query (each text as far as the model reads it); the server sorts
        and cuts (top_n)."""
        if not self.backend.reranks:
            raise RequestError("this model is not a rerank model")
        scores, tokens = self.backend.rerank(req["query"], req["documents"])
        self.channel.send({"kind": "reranked", "id": req["id"], "scores": scores, "tokens": tokens})

    def family_of(self) -> LLMFamily:
        if self.family is None:
            raise RequestError("this model is not an LLM: it does not generate")
        return self.family

    def chat_prompt(self, req: wire.ChatRequest, params: GenerateParams) -> str:
        """The conversation as the model's chat format writes it (a forced call's grammar set in `params`); the
        reader of its reasoning and calls is kept for the answer."""
        from xitui.worker import tools
        from xitui.worker.chat_prompt import chat_prompt

        family = self.family_of()
        template = self.backend.model_chat_template
        messages, extra, calls = tools.prepare(req, family, template, self.backend, params)
        extra.update(req.get("template_kwargs") or {})
        prompt = chat_prompt(family, template, messages, self.backend.bos_token, self.backend.eos_token, **extra)
        thoughts = tools.thought_reader(family, prompt)
        if calls is not None or thoughts is not None:
            self.readers[req["id"]] = tools.AnswerSplit(req["id"], thoughts, calls)
        return prompt

    def generate(self, req: wire.GenerateRequest | wire.ChatRequest) -> None:
        rid = req["id"]
        params = GenerateParams.from_request(req["params"])
        family = self.family_of()
        prompt = self.chat_prompt(req, params) if req["kind"] == "chat" else req["prompt"]
        # (a schema or a forced call; a GBNF grammar is the client's own for the whole text, thought included)
        formed = params.grammar is not None or bool(params.constraint and "gbnf" not in params.constraint)
        if formed and params.trigger is None and self.backend.lazy_grammars and req["kind"] == "chat":
            prompt = self.think_first(rid, prompt, params, req.get("template_kwargs") or {})
        if req["params"].get("count_only"):  # (the prompt as it will be written: count_tokens = message_start)
            self.count(req, prompt)
            return
        if params.constraint:
            if params.ignore_eos:
                raise RequestError("ignore_eos: an answer of a given form ends where the form does; leave it out")
            params.grammar = self.backend.grammar_for(params.constraint)
        # The spec's stop words and ids apply to every request, on top of the request's own.
        params.stop = list(dict.fromkeys([*params.stop, *(family.stop or [])]))
        params.stop_token_ids = list(dict.fromkeys([*params.stop_token_ids, *(family.stop_token_ids or [])]))
        images = request_images(req)
        if images:
            if self.backend.image_marker is None:
                raise RequestError("this model reads no images")
            # the server's marker for the request's image places, as the backend reads them
            prompt = prompt.replace(req["image_marker"], self.backend.image_marker)  # type: ignore[typeddict-item]
        engine = self.backend.engine
        if params.logprobs is not None and engine is None:
            raise RequestError("logprobs: served for GGUF models (llama.cpp); this model's engine does not give them")
        if engine is not None:
            if params.max_tokens is not None and params.max_tokens <= 0:
                params.max_tokens = None
            stop_ids = set(params.stop_token_ids) | self.backend.special_stop_ids(params.stop)
            placed = None
            if images:
                tokens, placed = self.backend.prompt_media(prompt, images)
            else:
                tokens = self.backend.prompt_tokens(prompt)
                if not tokens:
                    raise RequestError("prompt: empty, and this model has no start-of-text token to write from: "
                                       "send some text")
            if req["params"].get("counted"):
                self.channel.send({"kind": "counted", "id": rid, "prompt_tokens": len(tokens)})
            self.ready.put((rid, tokens, params, stop_ids, placed))
            return
        start = time.perf_counter()
        first: float | None = None
        for piece in self.backend.generate(prompt, params, lambda: rid in self.cancelled, images):
            if isinstance(piece, Finish):
                self.deliver(wire.done(rid, piece.reason, piece.prompt_tokens, piece.completion_tokens, start, first,
                                       image_tokens=piece.image_tokens, stop_word=piece.stop_word))
                return
            if first is None:
                first = time.perf_counter()
            self.deliver(wire.text(rid, piece))

    def think_first(self, rid: int, prompt: str, params: GenerateParams, template_kwargs: dict[str, Any]) -> str:
        """A thinking model's answer of a given form (a schema, a forced call): free while it reasons, held to
        the form from the end of its thought. Where the template did not open the thought, the prompt does, as
        the model would; where thinking is turned off (the template closed the thought, or the request says
        `enable_thinking` or `thinking` false), the form holds from the first token."""
        split = self.readers.get(rid)
        thoughts = split.thoughts if split is not None else None
        off = template_kwargs.get("enable_thinking") is False or template_kwargs.get("thinking") is False
        if thoughts is None or off or prompt.rstrip().endswith(thoughts.end):
            return prompt
        if not thoughts.thinking:
            prompt += thoughts.start + "\n"
            thoughts.thinking = True
        params.trigger, params.trigger_once = thoughts.end, True
        return prompt

    def count(self, req: wire.GenerateRequest | wire.ChatRequest, prompt: str) -> None:
        """The prompt's length in tokens, as its usage, and nothing written (Anthropic's count_tokens)."""
        self.readers.pop(req["id"], None)
        images = request_images(req)
        if images:
            if self.backend.image_marker is None:
                raise RequestError("this model reads no images")
            if self.backend.engine is None:
                raise RequestError("images are counted for GGUF vision models (llama.cpp); count the text alone")
            prompt = prompt.replace(req["image_marker"], self.backend.image_marker)  # type: ignore[typeddict-item]
            tokens = self.backend.prompt_media(prompt, images)[0]
        else:
            tokens = self.backend.prompt_tokens(prompt)
        now = time.perf_counter()
        self.channel.send(wire.done(req["id"], "stop", len(tokens), 0, now, None))

    def deliver(self, msg: wire.Answer) -> None:
        """Send a generation's message; a thinking model's reasoning and a tool call are taken out of the
        answer's text first (worker/tools.py). Never raises into the engine that calls it: when reading one
        request's output fails (a call nested a thousand levels deep...), that request alone ends with the
        error and is cancelled, and every other request of the batch goes on."""
        rid = msg["id"]
        try:
            self._deliver(msg)
        except Exception as exc:
            traceback.print_exc()
            self.readers.pop(rid, None)
            if msg["kind"] not in wire.LAST:
                self.cancelled.add(rid)  # the engine ends it quietly at its next step
            self.channel.send(wire.failed(rid, f"the model's answer could not be read: {type(exc).__name__}"))

    def _deliver(self, msg: wire.Answer) -> None:
        split = self.readers.get(msg["id"])
        if split is None:
            self.channel.send(msg)
            return
        if msg["kind"] == "text":
            if msg.get("logprobs"):
                self.channel.send({**msg, "text": ""})
            out = split.feed(msg["text"])
        elif msg["kind"] == "done":
            out = split.finish()
        else:  # an error: the request is over
            self.readers.pop(msg["id"], None)
            self.channel.send(msg)
            return
        for part in out:
            self.channel.send(part)
        if msg["kind"] == "done":
            self.readers.pop(msg["id"], None)
            # (a call made, then the answer cut by max_tokens: "length", as OpenAI says it)
            called = split.called and msg["finish_reason"] == "stop"
            self.channel.send({**msg, "finish_reason": "tool_calls"} if called else msg)

    def embed(self, batch: list[wire.EmbedRequest]) -> None:
        """One encode call for every text of every request in the batch; answers split back out."""
        backend = self.backend
        limit = backend.max_input_tokens
        accepted: list[tuple[wire.EmbedRequest, list[str], list[int], bool]] = []
        for req in batch:
            texts = req["input"]
            if not texts:
                self.channel.send(wire.failed(req["id"], "input: must hold at least one text", 400))
                continue
            # no tokenizer sees more of a text than the model can read (core/input_size)
            longest = max(len(t) for t in texts)
            if not req["truncate"] and longest > readable_chars(limit):
                self.channel.send(wire.failed(req["id"], (
                    f"an input is {longest} characters long, more than the {limit} tokens this model reads "
                    "(send truncate=true to cut it)"), 400))
                continue
            texts = [cut(t, limit) for t in texts]
            counts = backend.token_counts(texts)
            if not req["truncate"] and max(counts) > limit:
                self.channel.send(wire.failed(req["id"], (
                    f"an input is {max(counts)} tokens long; this model reads at most {limit} "
                    "(send truncate=true to cut it)"), 400))
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
            if "dimensions" in req:
                width = mine.shape[1]
                if req["dimensions"] > width:
                    self.channel.send(wire.failed(req["id"], (
                        f"dimensions: this model's vectors have {width}; ask for {width} or fewer"), 400))
                    continue
                mine = shortened(mine, req["dimensions"])
            self.channel.send({
                "kind": "embedded", "id": req["id"],
                # little-endian float32, base64: what OpenAI's encoding_format=base64 sends, and cheap to pass
                "vectors_b64": base64.b64encode(mine.astype("<f4").tobytes()).decode(),
                "count": len(texts),
                "tokens": sum(min(c, limit) for c in counts),
                "truncated": was_cut or max(counts) > limit,
                "batch": len(everything),
            })


def shortened(vectors: Any, dimensions: int) -> Any:
    """The first `dimensions` of each vector, unit length again (a zero vector stays zero)."""
    import numpy as np

    kept = np.asarray(vectors[:, :dimensions], dtype=np.float32)
    norms = np.linalg.norm(kept, axis=1, keepdims=True)
    return kept / np.where(norms > 0, norms, 1)


def main() -> None:
    channel = Channel()
    stdin = sys.stdin
    settings: wire.Settings = orjson.loads(stdin.readline())
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
        channel.send({"kind": "load_error", "message": message})
        sys.stderr.flush()
        os._exit(1)
    threading.Thread(target=worker.read_requests, args=(stdin,), daemon=True, name="requests").start()
    worker.serve()

