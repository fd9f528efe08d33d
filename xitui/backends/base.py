"""What the worker calls: a Backend (load, then generate, embed or rerank) and, for batched generation, its
Engine (requests join between steps; each request's messages go out through the sender the worker sets)."""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from xitui import wire
from xitui.core.chat_format.stop_words import partial_marker
from xitui.core.errors import XituiError

#: Delivers one message of a request (it carries the request's id) to the server.
Sender = Callable[[wire.Answer], None]


@dataclass
class GenerateParams:
    """What one generation request asks for (sampling, limits, stops), as every backend takes it."""

    max_tokens: int | None = None
    temperature: float = 0.7
    top_p: float = 0.95
    top_k: int = 40
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    seed: int | None = None
    repeat_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    ignore_eos: bool = False
    #: The answer's form, as the server sends it ({"json": True}, {"json_schema": ...}, {"gbnf": ...}).
    constraint: wire.Constraint | None = None
    #: That form as the backend holds answers to it (`Backend.grammar_for`: a guidance.Guide on llama.cpp).
    grammar: Any = None
    #: Where the grammar starts: the answer is free until it writes this text, then held to the grammar until
    #: the grammar is complete, then free again (an `auto` answer's tool calls); None: from the first token.
    trigger: str | None = None
    #: The grammar, once the trigger starts it, holds the answer to its end: a thinking model's answer of a
    #: given form, free while it reasons (the trigger: the end of its thought).
    trigger_once: bool = False
    #: Give each token's log probability with this many likeliest alternatives (None: none).
    logprobs: int | None = None
    #: Whose cached prompts this request may start from: the server's cache_scope (a hash of the API key it
    #: came with), None for anyone's. An engine that reuses a cached prompt prefix (usage's cached_tokens)
    #: reuses only one cached under the same key, so a client cannot confirm guesses of another's prompts.
    cache_key: str | None = None

    @classmethod
    def from_request(cls, data: wire.Params) -> GenerateParams:
        params = cls()
        for key in ("max_tokens", "temperature", "top_p", "top_k", "seed", "repeat_penalty", "presence_penalty",
                    "frequency_penalty", "ignore_eos"):
            value = data.get(key)
            if value is not None:
                setattr(params, key, value)
        stop = data.get("stop")
        params.stop = [stop] if isinstance(stop, str) else list(stop or [])
        params.stop_token_ids = list(data.get("stop_token_ids") or [])
        params.constraint = data.get("constraint") or None
        params.logprobs = data.get("logprobs")
        scope: object = data.get("cache_key")
        params.cache_key = scope if isinstance(scope, str) else None  # a scope is a hash's text, nothing else
        return params


@dataclass
class Finish:
    """The last item a generation yields: why it stopped and how many tokens it used."""

    reason: wire.FinishReason
    prompt_tokens: int
    completion_tokens: int
    #: Of the prompt's tokens, those its images took.
    image_tokens: int = 0
    #: The stop word that ended it, if one did.
    stop_word: str | None = None


class StopWords:
    """Cut streamed text at the first stop word, holding back a tail that may be the start of one."""

    def __init__(self, words: list[str]):
        self.words = [w for w in words if w]
        self.pending = ""
        #: The stop word the text met (Anthropic's stop_sequence), None before one is met.
        self.hit: str | None = None

    def feed(self, text: str) -> tuple[str, bool]:
        """The text that is safe to show now, and whether a stop word was reached (`hit`: which)."""
        buf = self.pending + text
        self.pending = ""
        if not self.words:
            return buf, False
        hits = [(i, w) for i, w in ((buf.find(w), w) for w in self.words) if i >= 0]
        if hits:
            at, self.hit = min(hits)
            return buf[:at], True
        hold = max(partial_marker(buf, word) for word in self.words)
        if hold:
            self.pending = buf[-hold:]
            return buf[:-hold], False
        return buf, False

    def flush(self) -> str:
        rest, self.pending = self.pending, ""
        return rest


class TextSoFar:
    """The text of an answer's tokens, a piece per token, decoding a few tokens each time instead of all of
    them (which costs more with every token of a long answer). As vLLM and TGI do: decode the tokens from a
    prefix offset, and the new text is what they add to the prefix's own text; a piece that ends inside a
    character (U+FFFD) waits for the token with its rest."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.prefix = 0
        self.read = 0

    def add(self, token: int) -> str:
        self.tokens.append(token)
        decode = self.tokenizer.decode
        before = decode(self.tokens[self.prefix:self.read], skip_special_tokens=True)
        text = decode(self.tokens[self.prefix:], skip_special_tokens=True)
        if len(text) <= len(before) or text.endswith("\ufffd"):
            return ""
        self.prefix, self.read = self.read, len(self.tokens)
        return text[len(before):]


def model_path(launch: wire.Settings) -> str:
    """Where the model's files are: the worker has downloaded them before it loads."""
    path = launch["model_path"]
    if path is None:
        raise XituiError("the model's files are not on this machine (nothing was downloaded)")
    return path


class RequestError(XituiError):
    """A request the model cannot serve (prompt longer than the context...): the caller's fault, a 4xx."""


def request_images(request: Any) -> list[bytes]:
    """A chat request's images, as the server checked and sent them (base64)."""
    return [base64.b64decode(text) for text in request.get("images") or ()]


def token_budget(prompt_tokens: int, context_length: int, max_tokens: int | None) -> int:
    """How many tokens a generation may make: what was asked, within what the context has left."""
    if prompt_tokens >= context_length:
        raise RequestError(f"the prompt is {prompt_tokens} tokens long; this model's context holds {context_length}")
    room = context_length - prompt_tokens
    return room if not max_tokens or max_tokens <= 0 else min(max_tokens, room)


class Engine(Protocol):
    """A batch engine as the worker drives it (backends/llamacpp_batch.py, backends/transformers_batch.py):
    prepared requests join between steps, and each step advances every running one. Messages go out through
    the backend's sender; a request whose id is in `cancelled` ends at the next step with no more messages."""

    cancelled: set[int]

    @property
    def busy(self) -> bool:
        """Whether a request is running or waiting (the worker blocks for new requests only when not)."""
        ...

    def submit(self, rid: int, prompt: list[int], params: GenerateParams, stop_ids: set[int],
               images: dict[int, Any] | None = None) -> None: ...

    def step(self) -> None: ...

    def fail_all(self, message: str) -> None:
        """End every request in the engine with this error (a step raised: the worker goes on)."""
        ...


class Backend:
    """A loaded model. Methods run in the worker's model thread, one request at a time; the model is
    freed when the worker process exits."""

    #: The batch engine that serves generations (None: `generate`, one request at a time).
    engine: Engine | None = None
    #: Whether this is a rerank model (`rerank` scores documents).
    reranks: bool = False
    #: Whether its engine starts a grammar where the answer writes a trigger (GenerateParams.trigger).
    lazy_grammars: bool = False
    #: Where a batch engine's messages go (set_sender, before load).
    _sender: Sender | None = None

    def set_sender(self, send: Sender) -> None:
        """Where the engine's messages go: the worker's delivery (it splits reasoning and tool calls out)."""
        self._sender = send

    def send(self, msg: wire.Answer) -> None:
        if self._sender is None:
            raise RuntimeError("the backend's sender was not set (Backend.set_sender)")
        self._sender(msg)

    #: Chat template carried by the model files (GGUF metadata, tokenizer_config.json), if any.
    model_chat_template: str | None = None
    bos_token: str = ""
    eos_token: str = ""

    def load(self, launch: wire.Settings, progress: Callable[[float, str], None]) -> wire.WorkerInfo:
        """Load the model; return facts for `describe` (device, context length...)."""
        raise NotImplementedError

    def generate(self, prompt: str, params: GenerateParams, cancelled: Callable[[], bool],
                 images: Sequence[bytes] = ()) -> Iterator[str | Finish]:
        """Yield text pieces as they are produced, then one Finish. `images` go where `image_marker` is in
        the prompt (a vision model served one request at a time)."""
        raise NotImplementedError

    #: How this backend's prompts say where an image goes (made at random as it loads, so no client's text
    #: can write it); None where the model reads no images.
    image_marker: str | None = None

    #: The engine's name, for what it says it cannot do.
    engine_name = "this engine"

    def grammar_for(self, constraint: wire.Constraint) -> Any:
        """The form an answer must take (`GenerateParams.constraint`), as this backend enforces it while
        generating; RequestError when it cannot."""
        raise RequestError(f"response_format and grammar are not served by the {self.engine_name} engine yet "
                           "(GGUF models on llama.cpp serve them)")

    def warm_up(self) -> None:
        """Run the model once on a tiny input, so the first request does not pay for first-use setup."""

    def prompt_tokens(self, prompt: str) -> list[int]:
        """The prompt's tokens, as the batch engine takes them."""
        raise NotImplementedError

    def prompt_media(self, prompt: str, images: list[bytes]) -> tuple[list[int], dict[int, Any]]:
        """A prompt with images: its tokens and the images by where their cells start (a vision model's, for
        its batch engine)."""
        raise RequestError("this model reads no images")

    def special_stop_ids(self, words: list[str]) -> set[int]:
        """Stop words that are one special token each (they never appear as text): their ids."""
        return set()

    def rerank(self, query: str, documents: list[str]) -> tuple[list[float], int]:
        """Each document's score against the query, and the tokens read."""
        raise RequestError("this model is not a rerank model")

    #: Longest input an embedding model reads, in tokens (longer inputs are cut or refused).
    max_input_tokens: int = 512

    def token_counts(self, texts: list[str]) -> list[int]:
        """Tokens each text takes (special tokens included), before any truncation."""
        raise NotImplementedError

    def embed(self, texts: list[str]) -> Any:
        """Embed a batch of texts (longer ones are truncated to max_input_tokens): a float32 numpy array."""
        raise NotImplementedError
