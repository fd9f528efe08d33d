"""PyTorch models through transformers: safetensors only, no remote code, token-by-token streaming.

Requests are batched by transformers' own continuous batching (transformers_batch.py), with xitui's sampler
picking each request's tokens. Where the model cannot batch that way, requests are served one at a time by
our own decode loop over the model's KV cache (`generate` below; `describe` says which and why): each token
comes out as soon as it is sampled, cancellation and stop words act between tokens.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from xitui import wire
from xitui.backends.base import (
    Backend,
    Finish,
    GenerateParams,
    RequestError,
    StopWords,
    TextSoFar,
    model_path,
    token_budget,
)
from xitui.backends.device import best_device, set_torch_threads
from xitui.backends.transformers_vision import Vision
from xitui.core.errors import LaunchError

# The tokenizers' own thread pool only competes with torch's.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def check_quantization(quantization: str) -> None:
    """4-bit / 8-bit need CUDA and bitsandbytes; say what to do instead when they are missing."""
    if quantization.lower() in ("none", ""):
        return
    if quantization not in ("4-bit", "8-bit"):
        raise LaunchError(f"quantization {quantization!r} is not one transformers can load (none, 4-bit, 8-bit)")
    if best_device() != "cuda":
        raise LaunchError(
            f"{quantization} quantization in transformers needs an NVIDIA GPU (bitsandbytes) and this machine has "
            "none: launch with --model-engine llama.cpp (converted to GGUF, it runs quantized on any machine), "
            "or with --quantization none"
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise LaunchError(f"{quantization} quantization needs bitsandbytes: pip install bitsandbytes") from None


class TransformersBackend(Backend):
    """PyTorch (safetensors) LLMs on transformers, generating with its streamer in a thread."""

    engine_name = "transformers"
    lazy_grammars = True

    def __init__(self) -> None:
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = "cpu"
        self.context_length = 2048
        self.eos_ids: set[int] = set()
        #: What the model's forward calls its KV cache.
        self.cache_name = "past_key_values"
        #: Forward arguments for every step: only the last position's logits when the model allows it.
        self.step_kwargs: dict[str, Any] = {}
        #: llguidance's view of the tokenizer, made at the first constrained request (about a second).
        self._guide_tokenizer: Any = None
        #: The continuous-batching engine (None: one request at a time), and how many requests it runs at once.
        self.engine = None
        self.slots = 1
        #: A vision-language model's processor (transformers_vision.py); None for a text model.
        self.vision: Vision | None = None

    def load(self, launch: wire.Settings, progress: Callable[[float, str], None]) -> wire.WorkerInfo:
        path = Path(model_path(launch))
        if not path.is_dir():
            raise LaunchError(f"model directory not found: {path}")
        if not any(path.glob("*.safetensors")):
            raise LaunchError(
                f"no .safetensors weights in {path}: xitui loads safetensors only, never pickled .bin files "
                "(convert them with transformers' save_pretrained)"
            )
        progress(0.2, "importing torch")
        import torch

        set_torch_threads()
        check_quantization(launch.get("quantization") or "none")
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText, AutoTokenizer

        self.device = best_device()
        kwargs: dict[str, Any] = {"trust_remote_code": False, "use_safetensors": True, "local_files_only": True}
        quant = (launch.get("quantization") or "none").lower()
        if quant in ("4-bit", "8-bit"):
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=quant == "4-bit", load_in_8bit=quant == "8-bit"
            )
            kwargs["device_map"] = "auto"
        kwargs["dtype"] = "auto" if self.device == "cuda" else torch.float32
        progress(0.5, "loading weights")
        try:
            config = AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
            sees = getattr(config, "vision_config", None) is not None
            self.tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True)
            loader = AutoModelForImageTextToText if sees else AutoModelForCausalLM
            self.model = loader.from_pretrained(path, **kwargs)
        except (OSError, ValueError, KeyError) as exc:
            raise LaunchError(f"transformers could not load {path}: {' '.join(str(exc).split())}") from None
        if sees:
            progress(0.8, "loading the image processor")
            self.vision = Vision(path, self.model.config)
            self.image_marker = self.vision.marker
        if "device_map" not in kwargs:
            self.model.to(self.device)
        self.model.eval()
        forward = inspect.signature(self.model.forward).parameters
        # transformers 5.2x names the KV cache `cache` (`past_key_values` is deprecated there, the only name before)
        self.cache_name = "cache" if "cache" in forward else "past_key_values"
        if "logits_to_keep" in forward:
            # Sampling reads the last position only; the prompt's other logits (prompt x vocabulary, 262k
            # wide for gemma) cost a third of the first token's time. `generate` skips them the same way.
            self.step_kwargs["logits_to_keep"] = 1
        tok = self.tokenizer
        self.model_chat_template = getattr(tok, "chat_template", None)
        self.bos_token = tok.bos_token or ""
        self.eos_token = tok.eos_token or ""
        eos = self.model.generation_config.eos_token_id if self.model.generation_config else None
        eos = eos if eos is not None else tok.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        config_ctx = getattr(self.model.config.get_text_config(), "max_position_embeddings", None)
        spec_ctx = int(launch.get("context_length") or 0)
        self.context_length = min(x for x in (spec_ctx, config_ctx) if x) if (spec_ctx or config_ctx) else 2048
        self.slots = max(1, int(launch.get("n_parallel") or 1))
        self.info: wire.WorkerInfo = {
            "engine": "transformers", "device": self.device, "context_length": self.context_length,
            "dtype": str(next(self.model.parameters()).dtype).replace("torch.", ""), "n_parallel": self.slots}
        if self.vision is not None:
            self.info["reads"] = ["images"]
        return self.info

    def warm_up(self) -> None:
        """One forward pass over one token: the first one touches every weight and sets up torch's kernels
        (250 ms of a gemma-270m first token on the build machine), so the first request does not."""
        import torch

        token = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else 0
        with torch.inference_mode():
            self.model(input_ids=torch.tensor([[token]], device=self.device), use_cache=True, **self.step_kwargs)
        self._start_batching()

    def _start_batching(self) -> None:
        """transformers' continuous batching for this model, once it has run once directly; a model it cannot
        batch is served one request at a time, and `describe` says why (`batching`)."""
        from xitui.backends.transformers_batch import TorchBatchEngine

        if self.vision is not None:  # transformers' batching manager takes token ids, not an image's tensors
            self.info["batching"] = "one request at a time (a vision model: its images go through its processor)"
            self.info["n_parallel"] = 1
            return
        try:
            self.engine = TorchBatchEngine(self, self.slots, self.send)
        except Exception as exc:  # noqa: BLE001 - any model transformers cannot batch: one at a time, said why
            self.engine = None
            self.info["batching"] = f"one request at a time ({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
            self.info["n_parallel"] = 1
            return
        many = "s" if self.slots > 1 else ""
        self.info["batching"] = f"continuous (transformers), {self.slots} request{many} at once"

    def prompt_tokens(self, prompt: str) -> list[int]:
        add_special = not (self.bos_token and prompt.startswith(self.bos_token))
        return self.tokenizer(prompt, add_special_tokens=add_special)["input_ids"]

    def grammar_for(self, constraint: wire.Constraint) -> str:
        """llguidance's grammar for the form, checked against this model's tokenizer with the limits that keep
        one request from costing others (backends/guidance.py)."""
        from xitui.backends import guidance

        return guidance.compile_for(constraint, self._guide())

    def _guide(self) -> Any:
        if self._guide_tokenizer is None:
            import llguidance.hf

            self._guide_tokenizer = llguidance.hf.from_tokenizer(self.tokenizer,
                                                                 n_vocab=self.model.config.get_text_config().vocab_size)
        return self._guide_tokenizer

    def new_guide(self, grammar: str) -> _Guide:
        """What holds one answer to `grammar` while it is written (its own llguidance matcher)."""
        return _Guide(self._guide(), grammar)

    def held(self, params: GenerateParams) -> Held | None:
        """What holds one answer to its grammar where the worker starts it (None: no grammar)."""
        if not params.grammar:
            return None
        return Held(self.new_guide(params.grammar), self.tokenizer, params.trigger, params.trigger_once)

    def generate(self, prompt: str, params: GenerateParams, cancelled: Callable[[], bool],
                 images: Sequence[bytes] = ()) -> Iterator[str | Finish]:
        import torch

        tok = self.tokenizer
        add_special = not (self.bos_token and prompt.startswith(self.bos_token))
        #: What the first step reads beside the tokens: the images' tensors (pixel_values...).
        first_step: dict[str, Any] = {}
        image_tokens = 0
        if images:
            if self.vision is None:
                raise RequestError("this model reads no images")
            inputs = self.vision.inputs(prompt, images, add_special)
            image_tokens = self.vision.image_tokens(inputs["input_ids"])
            prompt_ids = inputs.pop("input_ids")[0].tolist()
            inputs.pop("attention_mask", None)
            first_step = {name: value.to(self.device) if hasattr(value, "to") else value
                          for name, value in inputs.items()}
            if "pixel_values" in first_step and first_step["pixel_values"].is_floating_point():
                first_step["pixel_values"] = first_step["pixel_values"].to(self.model.dtype)
        else:
            prompt_ids = tok(prompt, add_special_tokens=add_special)["input_ids"]
        if not prompt_ids:
            raise RequestError("prompt: empty, and this model has no start-of-text token to write from: send some "
                               "text")
        max_tokens = token_budget(len(prompt_ids), self.context_length, params.max_tokens)
        stop_ids = set(params.stop_token_ids) | (set() if params.ignore_eos else self.eos_ids)
        stop_ids |= self.special_stop_ids(params.stop)
        stops = StopWords(params.stop)
        generator = None
        if params.seed is not None:
            generator = torch.Generator(device=self.device).manual_seed(int(params.seed))

        generated: list[int] = []
        text = TextSoFar(tok)
        reason: wire.FinishReason = "length"
        guide = self.held(params)
        with torch.inference_mode():
            input_ids = torch.tensor([prompt_ids], device=self.device)
            past = None
            for _ in range(max_tokens):
                out = self.model(input_ids=input_ids, use_cache=True, **{self.cache_name: past}, **self.step_kwargs,
                                 **first_step)
                past, first_step = getattr(out, self.cache_name), {}
                logits = self._penalise(out.logits[0, -1, :], params, prompt_ids, generated)
                if guide is not None:
                    logits = guide.allowed(logits)
                token = self._sample(logits, params, generator)
                if guide is not None:
                    token = guide.instead(token, token in stop_ids)
                if token in stop_ids:
                    reason = "stop"
                    break
                complete, cut = guide.took(token) if guide is not None else (False, 0)  # complete: it ends here
                generated.append(token)
                added = text.add(token)
                piece, stopped = stops.feed(added[:len(added) - cut] if cut else added)
                if piece:
                    yield piece
                if stopped or complete:
                    reason = "stop"
                    break
                if cancelled():
                    reason = "stop"
                    break
                input_ids = torch.tensor([[token]], device=self.device)
        rest = stops.flush()
        if rest and reason != "stop":
            yield rest
        yield Finish(reason=reason, prompt_tokens=len(prompt_ids), completion_tokens=len(generated),
                     image_tokens=image_tokens, stop_word=stops.hit)

    def special_stop_ids(self, words: list[str]) -> set[int]:
        """Stop words that are special tokens (<end_of_turn>...) are skipped in the text: stop on their ids."""
        tok = self.tokenizer
        special = set(tok.all_special_tokens) | set(getattr(tok, "added_tokens_encoder", {}))
        return {tok.convert_tokens_to_ids(w) for w in words if w in special}

    @staticmethod
    def _penalise(logits: Any, params: GenerateParams, prompt_ids: list[int], generated: list[int]) -> Any:
        """llama.cpp's repeat penalty (over prompt and output) and OpenAI's presence/frequency penalties."""
        import torch

        if params.repeat_penalty and params.repeat_penalty != 1.0:
            seen = torch.tensor(sorted(set(prompt_ids) | set(generated)), device=logits.device)
            values = logits[seen]
            logits = logits.clone()
            logits[seen] = torch.where(values > 0, values / params.repeat_penalty, values * params.repeat_penalty)
        if generated and (params.presence_penalty or params.frequency_penalty):
            ids, counts = torch.unique(torch.tensor(generated, device=logits.device), return_counts=True)
            logits = logits.clone()
            logits[ids] -= params.presence_penalty + params.frequency_penalty * counts.to(logits.dtype)
        return logits

    @staticmethod
    def _sample(logits: Any, params: GenerateParams, generator: Any) -> int:
        import torch

        if params.temperature is None or params.temperature <= 0:
            return int(torch.argmax(logits))
        logits = logits.float() / params.temperature
        if params.top_k and params.top_k > 0:
            kth = torch.topk(logits, min(params.top_k, logits.shape[-1])).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if params.top_p is not None and 0 < params.top_p < 1:
            sorted_probs, order = torch.sort(probs, descending=True)
            keep = torch.cumsum(sorted_probs, dim=-1) - sorted_probs < params.top_p
            sorted_probs = sorted_probs * keep
            probs = torch.zeros_like(probs).scatter(0, order, sorted_probs)
        return int(torch.multinomial(probs / probs.sum(), 1, generator=generator))


class _Guide:
    """An answer held to a grammar while it is written (llguidance): the tokens the grammar allows next
    are the only ones left to sample from; each one taken moves the grammar on."""

    def __init__(self, tokenizer: Any, grammar: str):
        import llguidance
        import llguidance.torch
        import torch

        from xitui.backends.guidance import limits

        self.matcher = llguidance.LLMatcher(tokenizer, grammar, limits=limits())
        self.mask = llguidance.torch.allocate_token_bitmask(1, tokenizer.vocab_size)
        self.shifts = torch.arange(32, dtype=torch.int32)

    def allowed(self, logits: Any) -> Any:
        """`logits` with every token the grammar refuses next at -inf. The mask is unpacked here with plain
        tensor operations: llguidance's own helper is a torch.compile kernel, 2 s to compile in each worker."""
        import llguidance.torch

        llguidance.torch.fill_next_token_bitmask(self.matcher, self.mask, 0)
        if self.matcher.is_error():
            raise RequestError(f"the answer's grammar failed here: {' '.join(self.matcher.get_error().split())[:300]}")
        if not bool(self.mask.any()):
            raise RequestError("the answer's grammar allows no token here")
        bits = ((self.mask[0].unsqueeze(-1) >> self.shifts) & 1).reshape(-1)[: logits.shape[-1]]
        return logits.float().masked_fill(bits.to(logits.device) == 0, float("-inf"))

    def took(self, token: int) -> bool:
        """Move the grammar past `token`; True when the answer's form is complete (nothing may follow)."""
        self.matcher.consume_token(token)
        return bool(self.matcher.is_stopped())


class Held:
    """An answer's grammar from where the worker starts it: the first token, or where the answer writes
    `trigger`. With a trigger, each call of an `auto` answer is held from its opening marker to its end and
    the text between is free; with `once` (a thinking model's end of thought), the answer is held from the
    trigger to its end. As the llama.cpp engine does it (llamacpp_batch.BatchEngine._watch)."""

    def __init__(self, guide: _Guide, tokenizer: Any, trigger: str | None = None, once: bool = False):
        self.guide = guide
        self.tokenizer = tokenizer
        self.trigger = trigger or ""
        self.once = once
        self.holding = not self.trigger
        #: The answer's text as it is given (the trigger is looked for in it), and the end of what was written
        #: while the grammar waits, as long as the trigger less one character.
        self.text = TextSoFar(tokenizer) if self.trigger else None
        self.tail = ""
        #: Tokens to write next whatever the model's logits say (the rest of a thought's end tag: `instead`).
        self.forced: list[int] = []

    def instead(self, token: int, ends: bool) -> int:
        """The token to write for the one sampled (`ends`: it would end the answer). A thinking model that ends
        its turn before it closes its thought has the thought closed for it: its end tag is written instead of
        the end (as a thinking budget does), then the answer in its form; ending there would answer a schema or
        a forced call with nothing. As the llama.cpp engine does (llamacpp_batch.BatchEngine._close_thought)."""
        if self.forced:
            return self.forced.pop(0)
        if ends and self.once and not self.holding:
            self.forced = self.tokenizer.encode(self.trigger, add_special_tokens=False)
            if self.tokenizer.decode(self.forced, skip_special_tokens=True) != self.trigger:
                # (a tag that is a special token, the end of the turn itself...: written as its text)
                self.forced = self.tokenizer.encode(self.trigger, add_special_tokens=False, split_special_tokens=True)
            return self.forced.pop(0)
        return token

    def allowed(self, logits: Any) -> Any:
        return self.guide.allowed(logits) if self.holding else logits

    def took(self, token: int) -> tuple[bool, int]:
        """Move past `token`. Whether the answer's form is complete (the answer ends with this token), and how
        many characters at the end of the token's text are not to be given: where one token completes the
        trigger and writes more that the grammar refuses (SmolLM2's `><` in `<tool_call><tool_value>`), that
        rest is dropped and the call held from the trigger, so a call the model opens is one the client reads."""
        text = self.text.add(token) if self.text is not None else ""
        if self.holding:
            return self._moved(self.guide.took(token)), 0
        seen = self.tail + text
        at = seen.find(self.trigger)
        if at < 0:
            self.tail = seen[-(len(self.trigger) - 1):] if len(self.trigger) > 1 else ""
            return False, 0
        self.holding, self.tail, self.forced = True, "", []  # (what is left of a tag written for the model: not)
        after = seen[at + len(self.trigger):]  # (the trigger ends in this token's text: `after` is the end of it)
        if after:
            ids = self.tokenizer.encode(after, add_special_tokens=False)
            if self.guide.matcher.try_consume_tokens(ids) != len(ids):
                self.guide.matcher.reset()
                return False, len(after)
        return self._moved(bool(self.guide.matcher.is_stopped())), 0

    def _moved(self, stopped: bool) -> bool:
        """After a token the grammar took: whether the answer ends. A completed call of an `auto` answer frees
        it again until the next trigger."""
        if not stopped:
            return False
        if not self.trigger or self.once:
            return True
        self.guide.matcher.reset()
        self.holding = False
        return False
