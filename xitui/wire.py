"""Everything that crosses between the server and its workers, one type each, told apart by `kind`.

Two channels carry these: a worker's pipe (one JSON object a line: the launch settings first, then requests
on its stdin; progress, ready or a load error, then each request's messages on its protocol pipe), and the
warm worker's socket (a fork request and its answer, a worker's exit, the warm worker's readiness). A new
message kind is added here and nowhere else: the readers dispatch on `kind`, and mypy checks each branch
against the type that kind names.

A request's messages come in order, each with the request's `id`: any number of `text`, `reasoning` and
`tool_calls` pieces, then exactly one of `done` (a generation), `embedded`, `reranked` or `error`.
"""

from __future__ import annotations

import time
from typing import Any, Literal, TypedDict

from typing_extensions import NotRequired

#: Free-form JSON a client sent and the worker hands on unread: a JSON schema, chat template variables.
JsonObject = dict[str, Any]

FinishReason = Literal["stop", "length", "tool_calls"]
Role = Literal["system", "user", "assistant", "tool"]


# --- what a request carries ----------------------------------------------------------------------------


class FunctionCall(TypedDict):
    """A call's function: its name and its arguments as the JSON text the model wrote."""

    name: str
    arguments: str


class ToolCall(TypedDict):
    """One tool call, as OpenAI's API writes it (the model's, or an earlier turn's in the conversation)."""

    id: str
    type: Literal["function"]
    function: FunctionCall


class ChatMessage(TypedDict):
    """A conversation's turn as the worker reads it: its text whole (content parts joined by the server)."""

    role: Role
    content: str
    tool_calls: NotRequired[list[ToolCall]]
    tool_call_id: NotRequired[str]


class Function(TypedDict):
    """A tool's function as a request offers it."""

    name: str
    description: NotRequired[str | None]
    parameters: NotRequired[JsonObject | None]
    strict: NotRequired[bool | None]


class Tool(TypedDict):
    """A tool a chat request offers the model."""

    type: Literal["function"]
    function: Function


class ToolCallForm(TypedDict):
    """The form of a forced tool call: its arguments' schema, the chat format's call syntax, one or several."""

    schema: JsonObject
    format: str
    several: bool
    #: An `auto` answer's calls: the form of what follows the format's opening marker (tool_calls.TRIGGERS).
    after_trigger: NotRequired[bool]


class Constraint(TypedDict, total=False):
    """The form an answer must take; exactly one key: any JSON, a JSON schema, a GBNF grammar, a forced call."""

    json: bool
    json_schema: JsonObject
    gbnf: str
    tool_call: ToolCallForm


class Params(TypedDict, total=False):
    """A generation's sampling, limits and stops, as the server sends them (unset: the engine's default)."""

    max_tokens: int | None
    temperature: float
    top_p: float
    top_k: int
    stop: str | list[str] | None
    stop_token_ids: list[int] | None
    seed: int | None
    repeat_penalty: float
    presence_penalty: float
    frequency_penalty: float
    ignore_eos: bool
    constraint: Constraint
    #: Each token's log probability, with this many likeliest alternatives.
    logprobs: int
    #: Whose cached prompts the request may start from (a hash of the API key it came with).
    cache_key: str
    #: Count the prompt's tokens and write nothing: the answer is a done with the usage alone.
    count_only: bool
    #: Say the prompt's length before the answer (a Counted message; Anthropic's message_start names it).
    counted: bool


# --- server -> worker ----------------------------------------------------------------------------------


class GenerateRequest(TypedDict):
    """Continue a prompt."""

    kind: Literal["generate"]
    id: int
    prompt: str
    params: Params


class ChatRequest(TypedDict):
    """Answer a conversation (rendered with the model's chat format), perhaps with tools."""

    kind: Literal["chat"]
    id: int
    messages: list[ChatMessage]
    params: Params
    tools: NotRequired[list[Tool]]
    tool_choice: NotRequired[str | JsonObject]
    parallel_tool_calls: NotRequired[bool]
    template_kwargs: NotRequired[JsonObject]
    #: The images (and sound clips) of the messages, in order (base64 of the files, checked by the server), and
    #: the marker that stands for each in the messages' text (the request's own, never written by a client).
    images: NotRequired[list[str]]
    image_marker: NotRequired[str]


class EmbedRequest(TypedDict):
    """Embed texts (longer ones cut to what the model reads, or refused when `truncate` is false)."""

    kind: Literal["embed"]
    id: int
    input: list[str]
    truncate: bool
    #: The leading dimensions to keep (made unit length again); absent: all of them.
    dimensions: NotRequired[int]


class RerankRequest(TypedDict):
    """Score each document against the query."""

    kind: Literal["rerank"]
    id: int
    query: str
    documents: list[str]


class CancelRequest(TypedDict):
    """Stop a request: its client went away. It ends with no more messages."""

    kind: Literal["cancel"]
    id: int


Request = GenerateRequest | ChatRequest | EmbedRequest | RerankRequest | CancelRequest
#: The requests a worker answers (a cancel is noted by the reader, never queued).
Work = GenerateRequest | ChatRequest | EmbedRequest | RerankRequest


def generate(prompt: str, params: Params) -> GenerateRequest:
    """A generate request; its id is the supervisor's to give (Supervisor.call)."""
    return {"kind": "generate", "id": 0, "prompt": prompt, "params": params}


def embed(texts: list[str], truncate: bool, dimensions: int | None = None) -> EmbedRequest:
    request: EmbedRequest = {"kind": "embed", "id": 0, "input": texts, "truncate": truncate}
    if dimensions is not None:
        request["dimensions"] = dimensions
    return request


def rerank(query: str, documents: list[str]) -> RerankRequest:
    return {"kind": "rerank", "id": 0, "query": query, "documents": documents}


def cancel(rid: int) -> CancelRequest:
    return {"kind": "cancel", "id": rid}


# --- worker -> server: a request's messages --------------------------------------------------------------


class TopLogprob(TypedDict):
    """One of the likeliest tokens at a place in the answer."""

    token: str
    logprob: float
    bytes: list[int] | None


class TokenLogprob(TypedDict):
    """A token of the answer, its log probability and the likeliest alternatives (OpenAI's chat shape)."""

    token: str
    logprob: float
    bytes: list[int] | None
    top_logprobs: list[TopLogprob]


class Text(TypedDict):
    """A piece of the answer's text (perhaps empty: log probabilities alone)."""

    kind: Literal["text"]
    id: int
    text: str
    logprobs: NotRequired[list[TokenLogprob]]


class Reasoning(TypedDict):
    """A piece of a thinking model's reasoning, taken out of the answer."""

    kind: Literal["reasoning"]
    id: int
    text: str


class ToolCalls(TypedDict):
    """Calls the model made, taken out of the answer's text whole."""

    kind: Literal["tool_calls"]
    id: int
    calls: list[ToolCall]


class Counted(TypedDict):
    """The prompt's length in tokens, sent before the answer's first piece where the request asks
    (Params.counted) and the model runs on a batch engine (the worker tokenizes its prompts)."""

    kind: Literal["counted"]
    id: int
    prompt_tokens: int


class PromptDetails(TypedDict, total=False):
    """Of the prompt's tokens, those the engine had already (a reused prefix), and those its images and sound
    clips took (OpenAI's usage names audio_tokens)."""

    cached_tokens: int
    image_tokens: int
    audio_tokens: int


class Usage(TypedDict):
    """Tokens a generation read and wrote."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: NotRequired[PromptDetails]


class Done(TypedDict):
    """A generation's end: why, its tokens, and its speed (the engine's clock)."""

    kind: Literal["done"]
    id: int
    finish_reason: FinishReason
    usage: Usage
    #: Seconds to the first token, and tokens a second after it.
    ttft: float
    tokens_per_s: float
    #: Times the request was put back to wait for room in the KV cache (llama.cpp's engine).
    preempted: NotRequired[int]
    #: Cells of the shared KV cache in use as the answer ended, its own included (llama.cpp's engine).
    kv_used: NotRequired[int]
    #: The stop word that ended the answer (Anthropic's stop_sequence), where one did.
    stop_word: NotRequired[str]
    #: Speculative decoding (llama.cpp): tokens drafted for the answer, and those the model accepted.
    drafted: NotRequired[int]
    accepted: NotRequired[int]


class Embedded(TypedDict):
    """An embed request's vectors: little-endian float32 rows, base64 (OpenAI's encoding_format=base64)."""

    kind: Literal["embedded"]
    id: int
    vectors_b64: str
    count: int
    tokens: int
    truncated: bool
    #: Texts embedded together with these (dynamic batching).
    batch: int


class Reranked(TypedDict):
    """A rerank request's scores, one per document in its order; the server sorts and cuts."""

    kind: Literal["reranked"]
    id: int
    scores: list[float]
    tokens: int


class Failed(TypedDict):
    """A request's end with an error: the client's (4xx) or the model's (5xx)."""

    kind: Literal["error"]
    id: int
    error: str
    status: int


Answer = Counted | Text | Reasoning | ToolCalls | Done | Embedded | Reranked | Failed
#: The piece kinds a generation streams before its end.
Piece = Text | Reasoning | ToolCalls
#: The kinds that end a request.
LAST = frozenset({"done", "embedded", "reranked", "error"})


def text(rid: int, piece: str, logprobs: list[TokenLogprob] | None = None) -> Text:
    msg: Text = {"kind": "text", "id": rid, "text": piece}
    if logprobs is not None:
        msg["logprobs"] = logprobs
    return msg


def failed(rid: int, error: str, status: int = 500) -> Failed:
    return {"kind": "error", "id": rid, "error": error, "status": status}


def done(rid: int, reason: FinishReason, prompt_tokens: int, generated: int, started: float, first: float | None,
         *, cached: int | None = None, preempted: int | None = None, kv_used: int | None = None,
         image_tokens: int | None = None, audio_tokens: int | None = None, stop_word: str | None = None,
         drafted: int | None = None, accepted: int | None = None) -> Done:
    """A generation's end, its speed measured from when it started and when its first token came (perf_counter
    times; `first` None: no token came). The one place every engine's `done` is made."""
    end = time.perf_counter()
    decode = end - (first or end)
    usage: Usage = {"prompt_tokens": prompt_tokens, "completion_tokens": generated,
                    "total_tokens": prompt_tokens + generated}
    details: PromptDetails = {}
    if cached is not None:
        details["cached_tokens"] = cached
    if image_tokens:
        details["image_tokens"] = image_tokens
    if audio_tokens:
        details["audio_tokens"] = audio_tokens
    if details:
        usage["prompt_tokens_details"] = details
    msg: Done = {"kind": "done", "id": rid, "finish_reason": reason, "usage": usage, "ttft": (first or end) - started,
                 "tokens_per_s": (generated - 1) / decode if decode > 0 and generated > 1 else 0.0}
    if preempted is not None:
        msg["preempted"] = preempted
    if kv_used is not None:
        msg["kv_used"] = kv_used
    if stop_word is not None:
        msg["stop_word"] = stop_word
    if drafted:
        msg["drafted"], msg["accepted"] = drafted, accepted or 0
    return msg


# --- worker -> server: its launch --------------------------------------------------------------------------


class WorkerInfo(TypedDict, total=False):
    """What a loaded worker tells of itself (`describe` shows it): the engine's facts, in the log line's order."""

    engine: str
    #: A PyTorch model run by llama.cpp: the GGUF it runs, in words (and why that engine).
    converted: str
    device: str
    context_length: int
    n_parallel: int
    kv_cells: int
    n_gpu_layers: int
    n_threads: int
    #: Speculative decoding, where the engine has it: "ngram" or "off".
    speculative: str
    dimensions: int
    batching: str
    #: How conversations are rendered, in words (None: the model cannot chat: no template, no prompt style).
    chat_format: str | None
    tool_format: str
    max_input_tokens: int
    #: The end-of-generation token (llama.cpp), the weights' dtype (transformers).
    eos_token_id: int
    dtype: str
    #: A vision model's projector (its file name), and what it reads ("images", "audio").
    projector: str
    reads: list[str]
    #: Seconds per launch stage ("download", "import", "weights", "warm-up").
    stages: dict[str, float]


class Progress(TypedDict):
    """How far the launch is: a fraction and the stage's words."""

    kind: Literal["progress"]
    progress: float
    stage: str


class Ready(TypedDict):
    """The model is loaded: requests may come."""

    kind: Literal["ready"]
    info: WorkerInfo


class LoadFailed(TypedDict):
    """The model could not be loaded; the worker exits."""

    kind: Literal["load_error"]
    message: str


Event = Progress | Ready | LoadFailed
#: Everything a worker writes on its protocol pipe.
FromWorker = Answer | Event


class Settings(TypedDict):
    """A worker's first line: the launch as the server planned it (server/runtime/launch_plan.py LaunchPlan)."""

    model_type: str
    model_name: str
    engine: str
    model_format: str | None
    quantization: str | None
    #: Where the files are; None: the worker downloads `model_id` first (and sets it).
    model_path: str | None
    model_id: str | None
    model_revision: str | None
    #: Where model_id comes from: "huggingface" or "modelscope" (absent: Hugging Face).
    model_hub: NotRequired[str]
    file_name: str | None
    context_length: int | None
    #: The registration as a spec file holds it (the worker reads its chat format, stops and abilities).
    registration: JsonObject
    #: A PyTorch model run by llama.cpp: the GGUF type the worker converts its weights to first, and why.
    convert_to: NotRequired[str]
    engine_reason: NotRequired[str]
    #: The launch's engine options, where asked for (or chosen by the server).
    n_gpu_layers: NotRequired[int]
    n_threads: NotRequired[int]
    n_parallel: NotRequired[int]
    #: llama.cpp: speculative decoding of greedy answers, "ngram" (prompt lookup) or "off".
    speculative: NotRequired[str]
    #: A vision GGUF's projector: its path, or (a downloaded model) its file name in the same repository.
    projector: NotRequired[str]


# --- the warm worker's socket ----------------------------------------------------------------------------


class ForkRequest(TypedDict):
    """Start a worker with these environment variables (the packet carries its stdin, pipe and log)."""

    kind: Literal["fork"]
    id: int
    envs: dict[str, str]


class Forked(TypedDict):
    """The answer to a fork request: the new worker's pid, or why there is none."""

    kind: Literal["forked"]
    id: int
    pid: NotRequired[int]
    error: NotRequired[str]


class Exited(TypedDict):
    """A forked worker ended (a signal's status is negative, as subprocess reports it)."""

    kind: Literal["exited"]
    pid: int
    code: int


class Warm(TypedDict):
    """The warm worker has imported the engines' libraries: forks may come."""

    kind: Literal["warm"]
    engines: list[str]
    failed: dict[str, str]
    seconds: float


FromWarm = Forked | Exited | Warm


# --- the server -> its clients: what a running model is -----------------------------------------------------
# GET /v1/models/{uid} (and each entry of GET /v1/models): Xinference's describe fields, then xitui's own. Every
# key may be missing: a real Xinference cluster sends only its own, and the front ends read both.


class MetricsRecord(TypedDict, total=False):
    """A replica's (or a model's, summed) counters and latest speeds."""

    requests: int
    errors: int
    in_flight: int
    tokens_generated: int
    tokens_prompt: int
    last_ttft: float | None
    last_tokens_per_s: float | None
    preempted: int
    #: Speculative decoding: tokens drafted and accepted since launch.
    drafted: int
    accepted: int
    kv_used: int | None
    last_batch_size: int | None
    max_batch_size: int
    last_used: float | None


class Running(TypedDict, total=False):
    """Where a model, or one worker process of it, stands."""

    state: str
    error: str | None
    progress: float
    stage: str
    pid: int | None
    memory_rss: int | None
    launch_seconds: float | None


class ReplicaDescription(Running, total=False):
    """One worker process of a model."""

    index: int
    start: str
    stages: dict[str, float]
    metrics: MetricsRecord


class ModelDescription(Running, total=False):
    """A launched model, as `describe` and the model listing give it."""

    # Xinference's
    model_type: str
    model_name: str
    model_format: str | None
    quantization: str | None
    model_ability: list[str]
    model_family: str
    model_lang: list[str]
    model_description: str | None
    model_size_in_billions: int | str | None
    context_length: int | None
    dimensions: int
    max_tokens: int | None
    language: list[str]
    type: str | None
    model_engine: str
    replica: int
    # the listing's (GET /v1/models)
    id: str
    object: str
    created: int
    owned_by: str
    #: False: registered, not running, loads when a request names it (server.autoload).
    loaded: bool
    load_position: int
    # xitui's (and Running's)
    launched_at: float
    launch_stages: dict[str, float] | None
    start: str | None
    device: str | None
    chat_format: str | None
    #: A PyTorch model run by llama.cpp: the GGUF type of its converted weights, and why that engine.
    converted_to: str | None
    engine_reason: str | None
    #: A vision model's projector file (Xinference's launch field), and what it reads ("images", "audio").
    multimodal_projector: str
    reads: list[str]
    metrics: MetricsRecord
    ttl: float | None
    idle_since: float | None
    unload_at: float | None
    restore: bool
    estimate: JsonObject | None
    replicas: list[ReplicaDescription]
    restarts: int
    last_crash: str | None
    last_crash_at: float | None
    n_threads: int
    kv_cells: int
    batching: str
    #: Speculative decoding of greedy answers (llama.cpp): "ngram" or "off".
    speculative: str
    slots: int
    running: int
    queued: int
    slots_reason: str
