"""Continuous batching for llama.cpp: every request of a GGUF model is decoded here, alone or with others in
one batch, as llama.cpp's own server does with parallel slots.

One context with `n_seq_max = slots` and one KV cache shared by all of them (`kv_unified`): the cache is a
pool of `pool` cells (the model's context length unless configured), so memory at launch is what one
sequence of the full context needs, and a request alone can use all of it. Each step builds one
`llama_batch`: the next token of every running slot, then chunks of newcomers' prompts up to the batch
size, so running streams never wait for a long prompt in one piece. Each slot samples with its own
llama.cpp sampler chain (penalties, top-k, top-p, temperature, seeded dist; greedy at temperature 0), its
own stop words and ids, max_tokens and cancellation; a slot that ends is freed and a queued request takes it.

Space in the pool is counted here, one cell per token a sequence holds: a newcomer starts when its prompt
fits (idle sequences' cached prompts are dropped first); when the running answers would outgrow the pool,
the slot that started last is put back at the head of the queue with everything it has so far and is
decoded again when there is room (recomputation, as vLLM preempts), so no request ever writes over
another's cells and the oldest one always goes on.

What a finished answer leaves in the pool is not left there while others run: attention covers every cell
up to the highest one in use, so idle sequences' cells slow every running stream (measured: a lone stream
at 46 tokens/s beside the kept caches of 8 finished answers, 68 once they are gone). Its cells are copied to
host memory instead (`Kept`, as llama.cpp's server keeps prompts with --cache-ram) and taken out of the
pool; a later prompt that starts with those tokens (the next turn of a chat) has them copied back.
"""

from __future__ import annotations

import ctypes
import itertools
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from xitui import wire
from xitui.backends.base import GenerateParams, RequestError, Sender, StopWords
from xitui.backends.guidance import Guide, allowed_ids, guide_bits
from xitui.backends.lookup import Lookup
from xitui.core.machine.estimate import KEPT_MAX, KEPT_SHARE
from xitui.core.machine.estimate import LLAMA_BATCH_TOKENS as BATCH_TOKENS

#: Tokens a grammar checks first when it refuses the chain's pick (see BatchEngine._best_allowed).
SHORTLIST = 1024
#: Speculative decoding (prompt lookup, backends/lookup.py): drafted tokens one step may verify (each is a row
#: of logits the context reserves: 1 MiB each for gemma's 262k vocabulary), and the most answers being written
#: for drafts to be proposed at all. One: a step of n tokens costs almost n steps of one on a CPU, so beside
#: another answer a draft would make that answer's every token wait for it; and under load the batch already
#: uses the compute.
SPEC_ROWS = 16
SPEC_STREAMS = 1
#: Tokens the repeat, presence and frequency penalties look back over (llama.cpp's default), the prompt's
#: last ones included, as llama.cpp's server counts them.
PENALTY_LAST_N = 64


@dataclass(eq=False)
class Slot:
    """One sequence of the batch engine: its request, its sampler chain, where it is in the context."""

    seq: int
    rid: Any
    params: GenerateParams
    prompt: list[int]
    budget: int
    sampler: Any
    stop: StopWords
    stop_ids: set[int]
    #: When it was admitted, in order: the slot admitted last is the one put back when the pool is full.
    order: int = 0
    started: float = field(default_factory=time.perf_counter)
    #: Tokens to decode before the next pick: the prompt, or after a preemption everything it had.
    feed: list[int] = field(default_factory=list)
    fed: int = 0
    pos: int = 0
    generated: int = 0
    last: int | None = None
    #: Index in the last batch whose logits are this slot's next token (None: none yet).
    logits_at: int | None = None
    pending: bytes = b""
    first: float | None = None
    #: Tokens in this sequence's cache: what the next request on it may reuse as a prefix.
    cached: list[int] = field(default_factory=list)
    #: The grammar the answer must follow (a guidance.Guide kept out of the chain; see _sample_within).
    grammar: Any = None
    #: A grammar that starts where the answer writes `params.trigger` (an `auto` answer's calls): held here
    #: until then, and again once it is complete (reset for the next call).
    waiting: Any = None
    #: The end of the text written while a grammar waits, as long as the trigger less one character.
    tail: str = ""
    #: Tokens to write next whatever the model's logits say (the rest of a thought's end tag: _close_thought).
    forced: list[int] = field(default_factory=list)
    #: The chain remembers what it picked (its penalties): a pick must be final before the chain sees it.
    remembers: bool = False
    #: Prompt tokens whose cells were there already (OpenAI's usage.prompt_tokens_details.cached_tokens).
    reused: int = 0
    #: Times it was put back to wait for room in the pool.
    preempted: int = 0
    #: Log probabilities of tokens whose text has not been sent yet (when the request asks for them).
    logprobs: list[wire.TokenLogprob] = field(default_factory=list)
    #: The prompt's images by where their cells start in `feed` (llamacpp_media.Image): decoded by the
    #: projector into this sequence when feeding reaches them, never put in a batch of tokens.
    images: dict[int, Any] = field(default_factory=dict)
    #: Its prompt lookup (speculative decoding; greedy answers only), and the draft decoded after `last` in
    #: the last batch, whose logits follow `logits_at`'s.
    lookup: Lookup | None = None
    drafts: list[int] = field(default_factory=list)


#: How a slot ends: an answer's finish reason, or an error.
Ending = Literal["stop", "length", "error"]


@dataclass(eq=False)
class Kept:
    """A finished sequence's cells, copied out of the pool (llama_state_seq_get_data) with the tokens they
    hold, so a prompt that starts with them is not decoded again."""

    tokens: list[int]
    state: Any
    size: int
    #: The cache scope of the request that wrote them (GenerateParams.cache_key): only its like reuses them.
    key: str | None = None


class BatchEngine:
    """Owns the batching context; `send(message)` delivers text pieces and the final `done` (xitui/wire.py)."""

    def __init__(self, llm: Any, slots: int, context: int, threads: int, send: Sender, pool: int | None = None,
                 speculative: bool = False):
        import llama_cpp

        self.L = llama_cpp
        self.llm = llm
        self.slots_total = slots
        self.send = send
        # the settings the unbatched path's context has (flash attention, SWA cache...): a request alone gives
        # the same text either way
        params = llama_cpp.llama_context_params()
        ctypes.pointer(params)[0] = llm.context_params
        params.n_ctx = pool or context
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        # (no flash attention: it read a 6.5k-token prompt on SmolLM2 135M in 34.9 s against 44.8 s, but on
        # this CPU a prompt read again from the cache then gave another greedy answer than read fresh: a
        # forced call's argument "None" against "", the same request whole and streamed)
        params.n_seq_max = slots
        # a step wants the logits of one token per slot at most: room for a whole batch of them (512 rows of
        # the vocabulary, 512 MiB for gemma's 262k) would be reserved for nothing
        params.n_outputs_max = slots + (SPEC_ROWS if speculative else 0)
        #: Whether greedy answers are decoded speculatively (prompt lookup), and the tokens drafted and accepted.
        #: (Not for a recurrent model: its state cannot be cut back to before a refused draft.)
        model = llm._model.model
        self.speculative = speculative and not (llama_cpp.llama_model_is_recurrent(model)
                                                or llama_cpp.llama_model_is_hybrid(model))
        self.drafted = self.accepted = 0
        params.kv_unified = True  # one pool for all sequences (see the module's docstring)
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
        if not self.ctx:
            raise RuntimeError("llama.cpp could not create the batching context")
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        #: Cells in the shared cache, and the most one sequence may hold (its prompt and answer together).
        self.pool = int(llama_cpp.llama_n_ctx(self.ctx))
        self.slot_context = min(context, self.pool)
        self._admitted = itertools.count()
        self.batch = llama_cpp.llama_batch_init(BATCH_TOKENS + slots + SPEC_ROWS, 0, 1)
        self.vocab = llama_cpp.llama_model_get_vocab(llm._model.model)
        #: Sliding-window attention span (gemma-3: 512; 0 without one), for what a reused cache must hold.
        self.n_swa = int(llama_cpp.llama_model_n_swa(llm._model.model))
        #: Free sequence ids, and what each one's cache holds: a request goes where the longest
        #: start of its prompt is cached already (as llama.cpp's server reuses prompts), else to the lowest.
        self.free = list(range(slots))
        self.cached: dict[int, list[int]] = {seq: [] for seq in range(slots)}
        #: The cache scope each sequence's cached tokens belong to: a prompt starts only from its own scope's.
        self.scope: dict[int, str | None] = {}
        self.running: dict[int, Slot] = {}
        #: Waiting: new requests (rid, prompt, params, stop ids) and preempted slots (at the head).
        self.queue: deque[Any] = deque()
        self.cancelled: set[Any] = set()
        #: Finished sequences' cells in host memory, oldest first, and the bytes they may take together
        #: (KEPT_SHARE of the pool; known once the first is copied).
        self.kept: list[Kept] = []
        self.kept_limit: int | None = None
        #: Every token's logit, reused by the steps of slots held to a grammar (_sample_within).
        self._cand: Any = None
        #: The projector of a vision model (llamacpp_media.Media), set by its backend; None: text only.
        self.media: Any = None

    # --- requests --------------------------------------------------------------------------------

    def submit(self, rid: Any, prompt: list[int], params: GenerateParams, stop_ids: set[int],
               images: dict[int, Any] | None = None) -> None:
        if len(prompt) >= self.slot_context:
            raise RequestError(f"the prompt is {len(prompt)} tokens long (its images' cells counted); this "
                               f"model's context holds {self.slot_context}")
        if images and (self.media is None or prompt[-1] < 0):
            raise RequestError("this model reads no images" if self.media is None else
                               "an image cannot end the prompt: the answer starts after text")
        self.queue.append((rid, prompt, params, stop_ids, images or {}))

    def cancel(self, rid: Any) -> None:
        self.cancelled.add(rid)

    @property
    def busy(self) -> bool:
        return bool(self.running or self.queue)

    # --- space in the pool -----------------------------------------------------------------------

    def _used(self) -> int:
        """Cells held: the running sequences' tokens and what idle sequences keep cached for reuse."""
        return sum(len(slot.cached) for slot in self.running.values()) + sum(len(self.cached[seq]) for seq in self.free)

    def _make_room(self, cells: int, keep: int | None = None) -> bool:
        """Whether `cells` more fit, after dropping idle sequences' cached prompts (but `keep`'s) if needed."""
        for seq in sorted(self.free, key=lambda s: -len(self.cached[s])):
            if self.pool - self._used() >= cells:
                break
            if seq != keep and self.cached[seq]:
                self.L.llama_memory_seq_rm(self.memory, seq, -1, -1)
                self.cached[seq] = []
        return self.pool - self._used() >= cells

    def _keep(self, seq: int, tokens: list[int]) -> None:
        """Copy a finished sequence's cells to host memory and free them in the pool."""
        L = self.L
        size = L.llama_state_seq_get_size(self.ctx, seq)
        state = (ctypes.c_ubyte * size)()
        got = L.llama_state_seq_get_data(self.ctx, state, size, seq)
        L.llama_memory_seq_rm(self.memory, seq, -1, -1)
        self.cached[seq] = []
        if self.kept_limit is None:
            self.kept_limit = min(int(KEPT_SHARE * self.pool * got / len(tokens)), KEPT_MAX)
        # a kept start of these tokens says nothing more: this one replaces it
        self.kept = [k for k in self.kept if k.tokens != tokens[:len(k.tokens)]]
        self.kept.append(Kept(tokens, state, got, self.scope.get(seq)))
        while sum(k.size for k in self.kept) > self.kept_limit:
            self.kept.pop(0)

    def _bring_back(self, prompt: list[int], seq: int, common: int, key: str | None) -> tuple[int, int]:
        """The sequence and cached length a new prompt starts from: `seq` as chosen, or a free sequence with
        kept cells of the same cache scope copied back when they hold a longer start of the prompt and fit."""
        best = max((k for k in self.kept if k.key == key), key=lambda k: _common(k.tokens, prompt), default=None)
        found = _common(best.tokens, prompt) if best else 0
        if best is None or found <= common:
            return seq, common
        target = min(self.free, key=lambda s: (len(self.cached[s]), s))  # an empty one if there is
        if not self._make_room(len(best.tokens) + len(self.cached[target]) + 1, keep=target):
            return seq, common
        L = self.L
        L.llama_memory_seq_rm(self.memory, target, -1, -1)
        self.cached[target] = []
        if not L.llama_state_seq_set_data(self.ctx, best.state, best.size, target):
            L.llama_memory_seq_rm(self.memory, target, -1, -1)
            return seq, common
        self.kept.remove(best)  # back in the pool: when it ends it is kept again, with what came after
        self.cached[target] = best.tokens
        self.scope[target] = key
        return target, found

    def _preempt(self, slot: Slot) -> None:
        """Put a running slot back at the head of the queue, its cells freed; it keeps its sampler, stop words
        and what it has sent, and decodes all its tokens again when it is admitted."""
        self.L.llama_memory_seq_rm(self.memory, slot.seq, -1, -1)
        slot.feed = slot.cached + slot.feed[slot.fed:] if slot.fed < len(slot.feed) else \
            slot.cached + ([slot.last] if slot.last is not None else [])
        slot.cached, slot.fed, slot.pos, slot.last, slot.logits_at = [], 0, 0, None, None
        self.running.pop(slot.seq)
        self.cached[slot.seq] = []
        self.free.append(slot.seq)
        self.queue.appendleft(slot)
        slot.preempted += 1

    def _grammar(self, params: GenerateParams) -> Guide | None:
        """The request's grammar (the guidance.Guide LlamaCppBackend.grammar_for made when the request was
        prepared; None without one): it reads the answer only, never the prompt."""
        return params.grammar or None

    def _sampler(self, params: GenerateParams) -> tuple[Any, Any]:
        """The request's sampler chain, and the sampler in it that should see the prompt's last tokens (the
        penalties; None without them)."""
        L = self.L
        history = None
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        eos = L.llama_vocab_eos(self.vocab)
        if params.ignore_eos and eos >= 0:
            bias = (L.llama_logit_bias * 1)(L.llama_logit_bias(token=eos, bias=float("-inf")))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_logit_bias(L.llama_vocab_n_tokens(self.vocab), 1,
                                                                             bias))
        if params.repeat_penalty != 1.0 or params.presence_penalty or params.frequency_penalty:
            if params.repeat_penalty <= 0:
                L.llama_sampler_free(chain)
                raise RequestError("repeat_penalty: must be above 0 (1 = none)")
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_penalties(
                L.llama_vocab_n_tokens(self.vocab), PENALTY_LAST_N, params.repeat_penalty,
                params.frequency_penalty, params.presence_penalty))
            history = L.llama_sampler_chain_get(chain, L.llama_sampler_chain_n(chain) - 1)
        if params.temperature <= 0:
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        else:
            if params.top_k and params.top_k > 0:
                L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_k(params.top_k))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_top_p(params.top_p, 1))
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_temp(params.temperature))
            seed = params.seed if params.seed is not None and params.seed >= 0 else L.LLAMA_DEFAULT_SEED
            L.llama_sampler_chain_add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain, history

    def _start_waiting(self) -> None:
        while self.free and self.queue:
            item = self.queue[0]
            if isinstance(item, Slot):  # preempted: it starts over on a clean sequence when all it had fits
                if item.rid in self.cancelled:
                    self.queue.popleft()
                    self._release(item)
                    self.cancelled.discard(item.rid)
                    continue
                seq = min(self.free)
                if not self._make_room(len(item.feed) + 1):
                    return
                self.queue.popleft()
                self.free.remove(seq)
                self.L.llama_memory_seq_rm(self.memory, seq, -1, -1)
                self.cached[seq] = []
                item.seq, item.order = seq, next(self._admitted)
                self.running[seq] = item
                continue
            rid, prompt, params, stop_ids, images = item
            if rid in self.cancelled:
                self.queue.popleft()
                self.cancelled.discard(rid)
                continue
            key = params.cache_key
            seq, common = max(((seq, _common(self.cached[seq], prompt) if self.scope.get(seq) == key else 0)
                               for seq in self.free), key=lambda pair: (pair[1], -pair[0]))
            seq, common = self._bring_back(prompt, seq, common, key)
            common = min(common, len(prompt) - 1)  # the last prompt token is decoded again for its logits
            # an image is decoded whole or not at all: a reuse that ends inside one starts where it does
            common = next((start for start, image in images.items() if start < common < start + image.n_tokens),
                          common)
            if common and self.L.llama_memory_seq_pos_min(self.memory, seq) > max(0, common - self.n_swa):
                # the cells the new tokens would attend to are gone: a sliding-window cache keeps only the
                # last n_swa positions of a copied sequence (_start_over), so gemma-3's early prompt cells
                # do not come back after a long answer. Decode the prompt whole, as llama.cpp's server does.
                common = 0
            if len(self.cached[seq]) > common:
                # only the reused start of that sequence's cache is kept: the rest would count against the room
                # the prompt needs, and a prompt that fits the pool alone would wait for it forever
                if self.L.llama_memory_seq_rm(self.memory, seq, common, -1):
                    self.cached[seq] = self.cached[seq][:common]
                else:
                    self.L.llama_memory_seq_rm(self.memory, seq, -1, -1)
                    self.cached[seq], common = [], 0
            if not self._make_room(len(prompt) - common + 1, keep=seq):
                return  # waits for room: running answers end, or idle caches go
            self.queue.popleft()
            try:
                grammar = self._grammar(params)
                sampler, history = self._sampler(params)
            except RequestError as exc:  # this request's own fault: it alone gets the error
                self.send(wire.failed(rid, str(exc), exc.status_code))
                continue
            if history is not None:
                for token in prompt[-PENALTY_LAST_N:]:
                    if token >= 0:  # (an image's cells are no token)
                        self.L.llama_sampler_accept(history, token)
            self.free.remove(seq)
            self.cached[seq] = []  # (its first `common` cells are the slot's now)
            budget = min(params.max_tokens or self.slot_context, self.slot_context - len(prompt))
            self.running[seq] = Slot(seq=seq, rid=rid, params=params, prompt=prompt, budget=budget,
                                     sampler=sampler, stop=StopWords(params.stop), stop_ids=stop_ids,
                                     order=next(self._admitted), feed=prompt, fed=common, pos=common,
                                     cached=prompt[:common], grammar=None if params.trigger else grammar,
                                     waiting=grammar if params.trigger else None,
                                     remembers=history is not None, reused=common, images=images,
                                     lookup=Lookup(prompt) if self.speculative and params.temperature <= 0
                                     and not params.trigger else None)

    # --- one step --------------------------------------------------------------------------------

    def fail_all(self, message: str) -> None:
        """Something went wrong in a step: every request in the batch (and waiting) gets the error, and the
        engine starts over, ready for the next ones."""
        for slot in list(self.running.values()):
            self._finish(slot, "error", error=message)
        while self.queue:
            item = self.queue.popleft()
            if isinstance(item, Slot):
                self._release(item)
            self.send(wire.failed(item.rid if isinstance(item, Slot) else item[0], message))

    def step(self) -> None:
        """Sample for every slot whose logits are ready, then decode one batch."""
        self._start_waiting()
        L = self.L
        for slot in list(self.running.values()):
            if slot.rid in self.cancelled:
                self._finish(slot, "stop", cancelled=True)
            elif slot.logits_at is not None:
                try:
                    self._pick(slot)
                except Exception as exc:  # this request's sampling, grammar or delivery: it alone ends
                    self._fail(slot, exc)
        self._decode_images()
        decoding = [slot for slot in self.running.values() if slot.last is not None]
        # this step's answer tokens need a cell each: drop idle caches, then put back the youngest slots
        while self.running and not self._make_room(len(decoding)):
            youngest = max(self.running.values(), key=lambda slot: slot.order)
            self._preempt(youngest)
            decoding = [slot for slot in decoding if slot is not youngest]
        batch = self.batch
        drafts = self._drafts(decoding)
        n = 0
        for slot in decoding:  # decoding: its last sampled token, then its draft
            last = slot.last
            assert last is not None
            self._put(n, last, slot.pos, slot.seq, True)
            slot.cached.append(last)
            slot.logits_at = n
            slot.pos += 1
            slot.last = None
            n += 1
            slot.drafts = drafts.get(slot.seq, [])
            for token in slot.drafts:
                self._put(n, token, slot.pos, slot.seq, True)
                slot.cached.append(token)
                slot.pos += 1
                n += 1
        room = self.pool - self._used()
        for slot in self.running.values():
            if slot.fed < len(slot.feed) and n < BATCH_TOKENS and room > 0 and slot.fed not in slot.images:
                upto = min((start for start in slot.images if start > slot.fed), default=len(slot.feed))
                take = min(upto - slot.fed, BATCH_TOKENS - n, room)
                room -= take
                slot.cached += slot.feed[slot.fed:slot.fed + take]
                for i in range(take):
                    last = slot.fed + i == len(slot.feed) - 1
                    self._put(n, slot.feed[slot.fed + i], slot.pos, slot.seq, last)
                    if last:
                        slot.logits_at = n
                    slot.pos += 1
                    n += 1
                slot.fed += take
        if n == 0:
            return
        batch.n_tokens = n
        code = L.llama_decode(self.ctx, batch)
        if code != 0:
            for slot in list(self.running.values()):
                self._finish(slot, "error", error=f"llama.cpp could not decode the batch (code {code})")

    def _decode_images(self) -> None:
        """Each slot whose feeding has reached an image: the projector encodes it and its embeddings are decoded
        into the slot's sequence, a batch of their own (llama.cpp decodes embeddings apart from tokens, and
        some models attend both ways within an image). The text after it joins the next batch of tokens."""
        for slot in list(self.running.values()):
            image = slot.images.get(slot.fed) if slot.fed < len(slot.feed) else None
            if image is None or slot.rid in self.cancelled:
                continue
            if not self._make_room(image.n_tokens):
                continue  # waits for room like any prompt
            try:
                slot.pos = self.media.decode(image, self.ctx, slot.pos, slot.seq, BATCH_TOKENS)
            except Exception as exc:  # this request's image: it alone ends
                self._fail(slot, exc)
                continue
            slot.cached += slot.feed[slot.fed:slot.fed + image.n_tokens]
            slot.fed += image.n_tokens

    def _drafts(self, decoding: list[Slot]) -> dict[int, list[int]]:
        """Each speculating slot's draft (prompt lookup) for this step, within the rows a step may verify, the
        cells free in the pool and what is left of its answer; cut where its grammar would refuse it."""
        if not self.speculative or len(decoding) > SPEC_STREAMS:
            return {}
        rows, room = SPEC_ROWS, self.pool - self._used() - len(decoding)
        out: dict[int, list[int]] = {}
        for slot in decoding:
            if slot.lookup is None or slot.waiting is not None:
                continue
            draft = slot.lookup.draft(min(rows, room, slot.budget - slot.generated - 1))  # (it ends with `last`)
            if draft and slot.grammar is not None:
                draft = draft[:slot.grammar.matcher.validate_tokens(draft)]
            if draft:
                out[slot.seq] = draft
                rows -= len(draft)
                room -= len(draft)
        return out

    def _pick(self, slot: Slot) -> None:
        """Sample the slot's next token and hand it on; its grammar ends the answer once it is complete.

        After a draft: the token at each of the draft's places in turn, as long as each is the draft's own (the
        model agrees with it); the cells of the draft's refused rest are taken out of the sequence. A greedy
        answer is the one without the draft but where llama.cpp rounds a token decoded beside others otherwise
        than alone and the model's likeliest tokens are that close (tests/backends/test_speculative.py)."""
        at = slot.logits_at
        assert at is not None
        drafts, slot.drafts = slot.drafts, []
        picks: list[int] = []
        for i in range(len(drafts) + 1):
            if slot.forced:
                token = slot.forced.pop(0)
                if slot.remembers:
                    self.L.llama_sampler_accept(slot.sampler, token)
            elif slot.grammar is None:
                token = self.L.llama_sampler_sample(slot.sampler, self.ctx, at + i)
                if slot.waiting is not None and slot.params.trigger_once and self._ends(slot, token):
                    token = self._close_thought(slot)
            else:
                token = self._sample_within(slot, at + i)
            picks.append(token)
            if i == len(drafts) or token != drafts[i] or token in slot.stop_ids \
                    or self.L.llama_vocab_is_eog(self.vocab, token) or (slot.grammar is not None and slot.grammar.done):
                break
        if drafts:
            assert slot.lookup is not None
            taken = len(picks) - 1
            slot.lookup.verified(len(drafts), taken)
            self.drafted += len(drafts)
            self.accepted += taken
            refused = len(drafts) - taken
            if refused:
                if not self.L.llama_memory_seq_rm(self.memory, slot.seq, slot.pos - refused, -1):
                    raise RuntimeError("llama.cpp could not take a refused draft out of the cache")
                slot.pos -= refused
                del slot.cached[-refused:]
        slot.logits_at = None
        for i, token in enumerate(picks):
            if slot.params.logprobs is not None:
                slot.logprobs.append(self._logprob(at + i, token, slot.params.logprobs))
            if slot.lookup is not None:
                slot.lookup.add(token)
            self._emit(slot, token)
            if self.running.get(slot.seq) is not slot:
                return
        # (the grammar has taken every pick: only the last one can have completed it)
        if slot.grammar is not None and slot.grammar.done:
            if slot.params.trigger and not slot.params.trigger_once:  # a call is complete: free until the next
                slot.grammar.matcher.reset()
                slot.grammar, slot.waiting, slot.tail = None, slot.grammar, ""
            else:
                self._finish(slot, "stop")

    def _ends(self, slot: Slot, token: int) -> bool:
        return token in slot.stop_ids or bool(self.L.llama_vocab_is_eog(self.vocab, token))

    def _close_thought(self, slot: Slot) -> int:
        """A thinking model that ends its turn before it closes its thought, where its answer has a form (a
        schema, a forced call): the thought is closed for it (its end tag written instead of the end, as a
        thinking budget does), and the answer is written in the form. Ending there would answer a forced
        call or a schema with nothing."""
        tag = slot.params.trigger or ""
        for special in (True, False):  # the model's own token for a tag, unless it ends the answer or shows no text
            tokens = list(self.llm.tokenize(tag.encode("utf-8"), add_bos=False, special=special))
            shown = b"".join(self._token_bytes(t, special=False) for t in tokens).decode("utf-8", errors="replace")
            if shown == tag and not any(self._ends(slot, t) for t in tokens):
                break
        slot.forced = tokens
        return slot.forced.pop(0)

    def _fail(self, slot: Slot, exc: Exception) -> None:
        """End one slot with the error its own request caused; the batch goes on without it."""
        if isinstance(exc, RequestError):
            message, status = str(exc), exc.status_code
        else:
            traceback.print_exc()
            message, status = f"the model failed: {type(exc).__name__}: {exc}", 500
        if self.running.get(slot.seq) is slot:
            try:
                self._finish(slot, "error", error=message, status=status)
            except Exception:  # its delivery failed too: its cells and sampler are freed all the same
                traceback.print_exc()

    def _candidates(self, index: int) -> Any:
        """The logits at `index` of the last batch as llama.cpp's candidate array (every token, unsorted)."""
        import numpy as np

        L = self.L
        n_vocab = L.llama_vocab_n_tokens(self.vocab)
        if self._cand is None:  # allocated once: a 262k-token vocabulary makes it 3 MiB
            self._cand = np.zeros(n_vocab, dtype=_token_data_dtype())
            self._ids = np.arange(n_vocab, dtype=np.int32)
        cand = self._cand
        cand["id"] = self._ids  # (the chain's top-k sorted the last one in place)
        cand["logit"] = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, index), shape=(n_vocab,))
        cand["p"] = 0.0
        return L.llama_token_data_array(data=cand.ctypes.data_as(L.llama_token_data_p), size=n_vocab, selected=-1,
                                        sorted=False)

    def _sample_within(self, slot: Slot, at: int) -> int:
        """A token the grammar allows, as llama.cpp's server samples one: the chain picks from every token;
        only when the grammar refuses that pick is the mask of allowed tokens computed (llguidance: bounded
        work, see backends/guidance.py) and the chain asked again among them. Most picks pass: the check
        costs one token. Raises RequestError when the grammar allows nothing (the slot alone ends)."""
        import ctypes as c

        L = self.L
        guide = slot.grammar
        if slot.remembers:
            arr = self._candidates(at)
            L.llama_sampler_apply(slot.sampler, c.byref(arr))
            token = int(arr.data[arr.selected].id)
        else:  # a chain without penalties keeps nothing of its picks: llama.cpp's own sampling loop will do
            token = L.llama_sampler_sample(slot.sampler, self.ctx, at)
        if not guide.take(token):
            mask = guide.allowed()
            arr = self._best_allowed(slot, mask, at)
            if arr is None:
                arr = self._candidates(at)
                cand = self._cand
                cand["logit"][~guide_bits(mask, len(cand))] = float("-inf")
            L.llama_sampler_apply(slot.sampler, c.byref(arr))
            token = int(arr.data[arr.selected].id)
            if not guide.take(token):
                raise RequestError("the answer's grammar refused every token the sampler could pick")
        if slot.remembers:
            L.llama_sampler_accept(slot.sampler, token)
        return token

    def _best_allowed(self, slot: Slot, mask: Any, at: int) -> Any:
        """The allowed tokens among the SHORTLIST best, when that decides the pick exactly: a chain without
        penalties (which would reorder the logits) that needs its top k allowed tokens (1 when greedy), and
        at least that many allowed among the shortlist. None: mask the whole vocabulary."""
        import numpy as np

        params = slot.params
        need = 1 if params.temperature <= 0 else params.top_k
        if slot.remembers or not need or need <= 0 or need > SHORTLIST:
            return None
        L = self.L
        n_vocab = L.llama_vocab_n_tokens(self.vocab)
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, at), shape=(n_vocab,))
        best = np.argpartition(logits, n_vocab - SHORTLIST)[n_vocab - SHORTLIST:].astype(np.int32)
        best = best[allowed_ids(mask, best)]
        if len(best) < need:
            return None
        short = np.zeros(len(best), dtype=_token_data_dtype())
        short["id"], short["logit"] = best, logits[best]
        self._short = short  # the array must outlive the chain's apply
        return L.llama_token_data_array(data=short.ctypes.data_as(L.llama_token_data_p), size=len(best),
                                        selected=-1, sorted=False)

    def _piece_message(self, slot: Slot, text: str) -> wire.Text:
        """A piece of the answer, with the log probabilities of the tokens it completes when asked for."""
        if slot.params.logprobs is None:
            return wire.text(slot.rid, text)
        given, slot.logprobs = slot.logprobs, []
        return wire.text(slot.rid, text, given)

    def _token_bytes(self, token: int, special: bool = True) -> bytes:
        """A token's bytes; `special` False: as the answer's text shows them (a control token: none)."""
        buf = (ctypes.c_char * 256)()
        size = self.L.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, special)
        return buf.raw[:max(0, size)]

    def _logprob(self, index: int, token: int, alternatives: int) -> wire.TokenLogprob:
        """OpenAI's entry for one token: its text, bytes and log probability under the model (the logits
        before any sampler), and the `alternatives` likeliest tokens at that position."""
        import numpy as np

        L = self.L
        n_vocab = L.llama_vocab_n_tokens(self.vocab)
        logits = np.ctypeslib.as_array(L.llama_get_logits_ith(self.ctx, index), shape=(n_vocab,))
        peak = float(logits.max())
        total = peak + float(np.log(np.exp(logits - peak, dtype=np.float64).sum()))

        def entry(tok: int) -> wire.TopLogprob:
            raw = self._token_bytes(tok)
            return {"token": raw.decode("utf-8", errors="replace"), "bytes": list(raw),
                    "logprob": float(logits[tok]) - total}

        top: list[wire.TopLogprob] = []
        if alternatives:
            best = np.argpartition(logits, n_vocab - alternatives)[n_vocab - alternatives:]
            top = [entry(int(t)) for t in best[np.argsort(-logits[best])]]
        return {**entry(token), "top_logprobs": top}

    def _put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch = self.batch
        batch.token[i] = token
        batch.pos[i] = pos
        batch.n_seq_id[i] = 1
        batch.seq_id[i][0] = seq
        batch.logits[i] = logits

    def _emit(self, slot: Slot, token: int) -> None:
        L = self.L
        slot.generated += 1
        if slot.first is None:
            slot.first = time.perf_counter()
        if token in slot.stop_ids or L.llama_vocab_is_eog(self.vocab, token):
            if slot.logprobs:
                slot.logprobs.pop()  # the end of the answer is not a token of it
            self._finish(slot, "stop")
            return
        slot.pending += self._token_bytes(token, special=False)
        try:
            text = slot.pending.decode("utf-8")
            slot.pending = b""
        except UnicodeDecodeError:  # the rest of a character comes with the next token
            text = ""
        if text and slot.waiting is not None:
            text = self._watch(slot, text)
        if text:
            shown, stopped = slot.stop.feed(text)
            if shown:
                self.send(self._piece_message(slot, shown))
            if stopped:
                self._finish(slot, "stop", by_word=True)
                return
        if slot.generated >= slot.budget:
            self._finish(slot, "length")
            return
        slot.last = token

    def _watch(self, slot: Slot, text: str) -> str:
        """Start the waiting grammar where the answer writes its trigger; the token's text to give. What the same
        token wrote after the trigger is taken by the grammar as this vocabulary spells it (llguidance reads
        bytes). When the grammar refuses that (SmolLM2 wrote `<tool_call><tool_value>`, its `><` one token),
        that rest of the token is not given as text and the call is held from the trigger on: a call the
        model opens is always one the client can read (bench/tool_calls.py: 1 answer in 600 before)."""
        trigger = slot.params.trigger or ""
        seen = slot.tail + text
        at = seen.find(trigger)
        if at < 0:
            slot.tail = seen[-(len(trigger) - 1):] if len(trigger) > 1 else ""
            return text
        guide, slot.waiting, slot.tail = slot.waiting, None, ""
        slot.grammar, slot.forced = guide, []  # (a tag written for the model: what is left of it is not written)
        after = seen[at + len(trigger):]  # (the trigger ends in this token's text: `after` is the end of it)
        if after and not all(guide.take(t) for t in self.llm.tokenize(after.encode("utf-8"), add_bos=False,
                                                                       special=False)):
            guide.matcher.reset()
            return text[:len(text) - len(after)]
        return text

    def _start_over(self, last: Slot) -> None:
        """Idle: a fresh cache holding only the last request's tokens, as sequence 0, at the start of the pool.

        Attention covers the cells up to the highest one in use, and the last answer's cells may lie anywhere
        after a burst; copied out and back (llama_state_seq_*, about 2 ms), they sit at the start, so a
        follow-up that starts with them (the next turn of a chat, the same prompt again) skips them and
        decodes as fast as on a fresh cache."""
        L = self.L
        got, buf = 0, None
        if last.cached:
            size = L.llama_state_seq_get_size(self.ctx, last.seq)
            buf = (ctypes.c_ubyte * size)()
            got = L.llama_state_seq_get_data(self.ctx, buf, size, last.seq)
        L.llama_memory_clear(self.memory, False)  # the cells' bookkeeping: what they hold is written over anyway
        self.cached = {seq: [] for seq in range(self.slots_total)}
        if got and L.llama_state_seq_set_data(self.ctx, buf, got, 0):
            self.cached[0] = last.cached
            self.scope = {0: last.params.cache_key}

    def _release(self, slot: Slot) -> None:
        self.L.llama_sampler_free(slot.sampler)
        slot.grammar = None

    def _finish(self, slot: Slot, reason: Ending, cancelled: bool = False, error: str | None = None,
                by_word: bool = False, status: int = 500) -> None:
        L = self.L
        self.running.pop(slot.seq, None)
        if cancelled or error is not None:  # what the cache holds is not a whole exchange: start it over
            L.llama_memory_seq_rm(self.memory, slot.seq, -1, -1)
            slot.cached = []
        self.cached[slot.seq] = slot.cached
        self.scope[slot.seq] = slot.params.cache_key
        self._release(slot)
        self.free.append(slot.seq)
        try:
            self._answer(slot, reason, cancelled, error, by_word, status)
        finally:  # after the answer's end is sent: the client does not wait for the tidying
            if not self.running and not self.queue:
                self._start_over(slot)
            elif slot.cached:  # others go on: its cells would slow them (see the module's docstring)
                self._keep(slot.seq, slot.cached)

    def _answer(self, slot: Slot, reason: Ending, cancelled: bool, error: str | None, by_word: bool,
                status: int = 500) -> None:
        """The end of a slot's answer: what stop words held back, and the `done` with its figures."""
        if cancelled:
            self.cancelled.discard(slot.rid)
            return
        if error is not None or reason == "error":
            self.send(wire.failed(slot.rid, error or "the model failed", status))
            return
        rest = "" if by_word else slot.stop.flush()  # text held back in case it began a stop word
        if rest or (slot.logprobs and not by_word):
            self.send(self._piece_message(slot, rest))
        self.send(wire.done(slot.rid, reason, len(slot.prompt), slot.generated, slot.started, slot.first,
                            cached=slot.reused, preempted=slot.preempted, kv_used=self._used(),
                            image_tokens=sum(image.n_tokens for image in slot.images.values() if not image.audio),
                            audio_tokens=sum(image.n_tokens for image in slot.images.values() if image.audio),
                            stop_word=slot.stop.hit, drafted=slot.lookup.proposed if slot.lookup else None,
                            accepted=slot.lookup.accepted if slot.lookup else None))


def _token_data_dtype() -> Any:
    """llama_token_data (id, logit, p) as a numpy record, so logits fill candidate arrays without a loop."""
    import numpy as np

    return np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


def _common(cached: list[int], prompt: list[int]) -> int:
    """How many tokens at the start of `prompt` the cache holds already."""
    n = 0
    for a, b in zip(cached, prompt, strict=False):
        if a != b:
            break
        n += 1
    return n
