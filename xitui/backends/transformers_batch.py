"""Continuous batching for PyTorch models: transformers' own (its scheduler and paged KV cache, one pool of
the model's context for all requests), with xitui's sampler as its one logits processor.

transformers' continuous batching samples every request the same way (one `do_sample` for all) and takes
no per-request logits processor; xitui's requests each have their own temperature, top-k, top-p, seed,
penalties, grammar and log probabilities. So the manager is made with a single processor of ours
(`_Picker`): for each row of the batch it finds the request, picks that request's token with its own
settings (the same code as the one-at-a-time loop: TransformersBackend._penalise/_sample, _Guide) and
hands back scores where only that token is possible; the manager's argmax then takes it. Everything
else (which requests run, prefill chunking, the paged cache, prefix sharing) is transformers'.

Text, stop words, cancellation and the figures are made here from the tokens the manager streams back.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Literal

from xitui import wire
from xitui.backends.base import GenerateParams, RequestError, Sender, StopWords, TextSoFar

#: Tokens of a page of the paged cache (transformers' default; core/machine/estimate.py counts it as TORCH_PAGE).
PAGE = 256
#: Prompt tokens decoded per step, over all newcomers.
BATCH_TOKENS = 512


@dataclass(eq=False)
class Request:
    """One request in the manager: its settings, what it was sent, and the picker's state for it."""

    rid: Any
    key: str
    params: GenerateParams
    prompt: list[int]
    stop: StopWords
    stop_ids: set[int]
    generator: Any = None
    guide: Any = None
    #: Tokens picked so far (the penalties read them), how many of them have been turned into text, and that.
    picked: list[int] = field(default_factory=list)
    seen: int = 0
    text: Any = None
    #: Log probabilities of the picked tokens (when the request asks for them), and how many were sent.
    logprobs: list[wire.TokenLogprob] = field(default_factory=list)
    logprobs_sent: int = 0
    #: The grammar's form is complete: the answer ends after this many tokens.
    complete_at: int | None = None
    #: Characters not to give at the end of the text of the n-th token picked (transformers.Held.took).
    cuts: dict[int, int] = field(default_factory=dict)
    #: Why its own pick failed (a grammar that allows nothing...): it alone ends, at the next step.
    failed: tuple[str, int] | None = None
    started: float = field(default_factory=time.perf_counter)
    first: float | None = None


class TorchBatchEngine:
    """Owns transformers' continuous-batching manager for one model; `send(rid, message)` delivers pieces of
    text and the final `done`, as the llama.cpp batch engine does."""

    def __init__(self, backend: Any, slots: int, send: Sender):
        import torch
        from transformers import GenerationConfig
        from transformers.generation.configuration_utils import ContinuousBatchingConfig

        self.backend = backend
        self.send = send
        #: Running requests by the manager's id for them (`_key`); the picker reads this from the manager's
        #: thread (one dict lookup or update at a time: atomic in CPython, no lock needed).
        self.requests: dict[str, Request] = {}
        self.cancelled: set[Any] = set()
        model = backend.model
        picker = _make_processor_class()(self)
        # the manager builds its processors from the model; ours is the only one it gets
        own = model._get_logits_processor
        model._get_logits_processor = lambda config: _processor_list([picker])
        try:
            # do_sample off: the manager takes each row's likeliest token, the one ours left possible
            config = GenerationConfig(do_sample=False, max_new_tokens=backend.context_length, eos_token_id=-1)
            blocks = -(-backend.context_length // PAGE) + slots  # the context, and a partial page per request
            self.manager = model.init_continuous_batching(
                generation_config=config,
                continuous_batching_config=ContinuousBatchingConfig(
                    page_size=PAGE, num_blocks=blocks, max_batch_tokens=BATCH_TOKENS, max_requests_per_batch=slots,
                    use_cuda_graph=False, scheduler_type="fifo"),
            )
        finally:
            model._get_logits_processor = own
        self.manager.logit_processor.tensors_required = 1  # ours takes one (unused) row of arguments
        self.manager.start()
        self.torch = torch

    # --- requests --------------------------------------------------------------------------------

    def submit(self, rid: Any, prompt: list[int], params: GenerateParams, stop_ids: set[int],
               images: dict[int, Any] | None = None) -> None:
        from xitui.backends.base import token_budget

        backend = self.backend
        budget = token_budget(len(prompt), backend.context_length, params.max_tokens)
        req = Request(rid=rid, key=_key(rid), params=params, prompt=prompt,
                      stop=StopWords(params.stop), stop_ids=stop_ids, text=TextSoFar(backend.tokenizer))
        if params.seed is not None:
            req.generator = self.torch.Generator(device=backend.device).manual_seed(int(params.seed))
        req.guide = backend.held(params)
        stop_ids = set(stop_ids) | (set() if params.ignore_eos else backend.eos_ids)
        req.stop_ids = stop_ids
        self.requests[req.key] = req
        eos = sorted(stop_ids) or [-1]
        self.manager.add_request(prompt, request_id=req.key, max_new_tokens=budget, streaming=True,
                                 eos_token_id=eos)

    def cancel(self, rid: Any) -> None:
        self.cancelled.add(rid)

    @property
    def busy(self) -> bool:
        return bool(self.requests)

    def fail_all(self, message: str) -> None:
        for req in list(self.requests.values()):
            self._end(req)
            self.send(wire.failed(req.rid, message))

    # --- the stream back ---------------------------------------------------------------------------

    def step(self) -> None:
        """Deliver what the manager produced (waits up to 20 ms for it); end cancelled requests."""
        for rid in list(self.cancelled):
            req = self.requests.get(_key(rid))
            self.cancelled.discard(rid)
            if req is not None:
                self.manager.cancel_request(req.key)
                self._end(req)
        fatal = self.manager.background_thread_status.fatal_error
        if fatal is not None:  # its loop is gone: fail what it held and end the worker (the server sees it die)
            self.fail_all(f"the model failed: {type(fatal).__name__}: {fatal}")
            raise SystemExit(f"transformers' batching loop stopped: {fatal}")
        for req in list(self.requests.values()):
            if req.failed is not None:
                self.manager.cancel_request(req.key)
                self._end(req)
                self.send(wire.failed(req.rid, *req.failed))
        output = self.manager.get_result(timeout=0.02)
        while output is not None:
            req = self.requests.get(output.request_id)
            if req is not None:  # (outputs still queued for a request that ended are dropped)
                try:
                    self._take(req, output)
                except Exception as exc:  # reading or delivering this request's output: it alone ends
                    traceback.print_exc()
                    self.manager.cancel_request(req.key)
                    self._end(req)
                    self.send(wire.failed(req.rid, f"the model failed: {type(exc).__name__}: {exc}"))
            output = self.manager.get_result(timeout=0)

    def _take(self, req: Request, output: Any) -> None:
        tokens = output.generated_tokens
        reason: Literal["stop", "length", "error"] | None = None
        by_word = False
        while req.seen < len(tokens):
            token = tokens[req.seen]
            req.seen += 1
            if req.first is None:
                req.first = time.perf_counter()
            if token in req.stop_ids:
                reason = "stop"
                break
            added = req.text.add(token)
            cut = req.cuts.pop(req.seen, 0)
            piece, by_word = req.stop.feed(added[:len(added) - cut] if cut else added)
            if piece:
                self.send(self._piece(req, piece, req.seen))
            if by_word or (req.complete_at is not None and req.seen >= req.complete_at):
                reason = "stop"
                break
        if reason is None and output.is_finished():
            reason = "error" if output.error else "length"
        if reason is None:
            return
        if not output.is_finished():
            self.manager.cancel_request(req.key)
        self._end(req)
        if reason == "error":
            self.send(wire.failed(req.rid, f"the model failed: {output.error}"))
            return
        generated = req.seen
        shown = generated - 1 if generated and tokens[generated - 1] in req.stop_ids else generated  # the end: no token
        rest = "" if by_word else req.stop.flush()
        if rest or (req.params.logprobs is not None and req.logprobs_sent < shown):
            self.send(self._piece(req, rest, shown))
        self.send(wire.done(req.rid, reason, len(req.prompt), generated, req.started, req.first,
                            stop_word=req.stop.hit))

    def _piece(self, req: Request, text: str, upto: int) -> wire.Text:
        """A piece of the answer, with the log probabilities of its tokens up to `upto` when asked for."""
        if req.params.logprobs is None:
            return wire.text(req.rid, text)
        given = req.logprobs[req.logprobs_sent:upto]
        req.logprobs_sent += len(given)
        return wire.text(req.rid, text, given)

    def _end(self, req: Request) -> None:
        self.requests.pop(req.key, None)


class _Picker:
    """The manager's logits processor: each row's token picked with its own request's settings."""

    def __init__(self, engine: TorchBatchEngine):
        self.engine = engine
        self.rows: list[str] = []

    def pick_guarded(self, req: Request, logits: Any) -> int:
        """`pick`, where a request's own failure ends that request only (the manager's loop, which every
        request shares, never sees the exception): it gets the most likely token and is ended at the next step."""
        if req.failed is None:
            try:
                return self.pick(req, logits)
            except RequestError as exc:
                req.failed = (str(exc), exc.status_code)
            except Exception as exc:
                traceback.print_exc()
                req.failed = (f"the model failed: {type(exc).__name__}: {exc}", 500)
        return int(logits.argmax())

    def pick(self, req: Request, logits: Any) -> int:
        backend = self.engine.backend
        params = req.params
        raw = logits
        logits = backend._penalise(logits, params, req.prompt, req.picked)
        if req.guide is not None:
            if req.complete_at is not None:  # the form is complete: the answer ends here whatever comes
                return int(raw.argmax())
            logits = req.guide.allowed(logits)
        token = backend._sample(logits, params, req.generator)
        if req.guide is not None:
            token = req.guide.instead(token, token in req.stop_ids)
        if params.logprobs is not None:
            req.logprobs.append(_logprob(backend.tokenizer, raw, token, params.logprobs))
        req.picked.append(token)
        if req.guide is not None:
            complete, cut = req.guide.took(token)
            if cut:
                req.cuts[len(req.picked)] = cut
            if complete:
                req.complete_at = len(req.picked)
        return token


def _key(rid: Any) -> str:
    """The manager's id for a worker request."""
    return f"r{rid}"


def _processor_list(processors: list[Any]) -> Any:
    from transformers import LogitsProcessorList

    return LogitsProcessorList(processors)


def _logprob(tokenizer: Any, logits: Any, token: int, alternatives: int) -> wire.TokenLogprob:
    """OpenAI's entry for one token: its text, bytes and log probability under the model (before any
    sampling setting), and the `alternatives` likeliest tokens."""
    import torch

    logp = torch.log_softmax(logits.float(), dim=-1)

    def entry(tok: int) -> wire.TopLogprob:
        text = tokenizer.decode([tok])
        return {"token": text, "bytes": list(text.encode("utf-8")), "logprob": float(logp[tok])}

    top = [entry(int(t)) for t in torch.topk(logp, alternatives).indices] if alternatives else []
    return {**entry(token), "top_logprobs": top}


def _make_processor_class() -> Any:
    """_Picker as transformers' continuous-batching processor (its base class imports torch)."""
    from transformers.generation.continuous_batching.cb_logits_processors import ContinuousBatchingLogitsProcessor

    class Picker(ContinuousBatchingLogitsProcessor, _Picker):
        supported_kwargs: dict[str, type] = {}
        ignored_kwargs: tuple[str, ...] = ()

        def fill_defaults(self, int32_tensor: Any) -> None:
            int32_tensor.fill_(0)

        def prepare_tensor_args(self, requests_with_new_token: list[Any]) -> Any:
            import torch

            self.rows = [r.state.request_id for r in requests_with_new_token]
            return torch.zeros(len(self.rows), dtype=torch.int32)

        def __call__(self, scores: Any, tensor_arg: Any) -> Any:

            requests = self.engine.requests
            for i in range(scores.size(0)):
                req = requests.get(self.rows[i]) if i < len(self.rows) else None
                if req is not None:
                    token = self.pick_guarded(req, scores[i])
                    scores[i].fill_(float("-inf"))
                    scores[i, token] = 0.0
            return scores

    return Picker
