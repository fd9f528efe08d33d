"""Request bodies of the server's routes, and reading them (orjson + pydantic, one-line errors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar, cast

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema
from starlette.requests import Request

from xitui import wire
from xitui.core import launch_envs
from xitui.core.errors import XituiError
from xitui.core.names import MODEL_TYPES
from xitui.core.units import parse_duration
from xitui.server import json_body
from xitui.server.json_body import BodyTooLarge
from xitui.server.off_loop import off_loop
from xitui.server.structured import UNSERVED, ResponseFormat, constraint, refuse_unserved


def _whole_number(value: Any) -> Any:
    """A JSON number that is whole (2 or 2.0, as JSON Schema's integer) as an int; true and false are not
    numbers here, and "2" stays a string (refused by the strict check after this)."""
    if isinstance(value, bool):
        raise ValueError("must be a whole number, not true or false")
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


#: Whole numbers as JSON Schema's `integer` reads them: 2.0 is one, true and "2" are not.
WHOLE = BeforeValidator(_whole_number)


class _Body(BaseModel):
    """Extra keys are kept: clients send more than these."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class RegisterBody(_Body):
    """POST /v1/model_registrations/{type}: a spec as JSON text, and whether to keep it on disk."""

    model: str | dict[str, Any]
    persist: bool = False
    worker_ip: str | None = None


#: A time to live as `parse_duration` reads it: seconds, 30s / 10m / 1h30m / 2d, or never (documented;
#: the launch itself checks it, so a bad one gets parse_duration's one line).
TTL_PATTERN = r"^(never|-?[0-9]+(\.[0-9]+)?|([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+)$"


#: The engine names a launch may give (xitui's and Xinference's spellings; any case is read).
ENGINE_NAMES = ("llama.cpp", "llama_cpp", "llama-cpp", "llama-cpp-python", "transformers", "pytorch",
                "sentence_transformers", "sentence-transformers")


#: A model uid: it names the model's log files, so a file name's characters, and short enough for any disk.
UID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
#: Longest ttl in seconds (ten years): past it, say "never" (-1).
MAX_TTL = 10 * 365 * 24 * 3600


class LaunchBody(_Body):
    """POST /v1/models (and /v1/estimate, and what launches.json remembers): one launch, checked."""

    #: Letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100 (default: the name).
    model_uid: Annotated[str, Field(pattern=UID_PATTERN)] | None = None
    model_name: Annotated[str, Field(min_length=1, max_length=200)]
    model_type: Annotated[str, Field(json_schema_extra={"enum": list(MODEL_TYPES)})] = "LLM"
    model_engine: Annotated[str, Field(json_schema_extra={"enum": sorted(ENGINE_NAMES)})] | None = None
    model_format: Annotated[str, Field(max_length=64)] | None = None
    model_size_in_billions: int | float | Annotated[str, Field(max_length=64)] | None = None
    quantization: Annotated[str, Field(max_length=64)] | None = None
    replica: Annotated[int, Field(ge=1, le=64, strict=True), WHOLE] = 1
    n_gpu: Annotated[int, Field(ge=0, le=1024, strict=True), WHOLE] | Literal["auto"] | None = "auto"
    #: Environment variables for the worker: only those on the allow-list (devices, threads, Hugging Face,
    #: XITUI_THREADS...; see docs/security.md); anything else is refused.
    envs: Annotated[dict[str, str], Field(max_length=64), WithJsonSchema({
        "type": "object", "maxProperties": 64, "propertyNames": {"enum": sorted(launch_envs.ALLOWED)},
        "additionalProperties": {"type": "string", "maxLength": launch_envs.MAX_VALUE, "pattern": "^[^\\u0000]*$"}})
    ] | None = None
    #: xitui's own: tokens of context to allocate (default: the spec's context_length)
    context_length: Annotated[int, Field(ge=16, le=10_000_000, strict=True), WHOLE] | None = None
    #: llama.cpp: layers on the GPU (-1: all, 0: none)
    n_gpu_layers: Annotated[int, Field(ge=-1, le=100_000, strict=True), WHOLE] | None = None
    #: threads the model computes with (default: the physical cores, shared out between replicas)
    n_threads: Annotated[int, Field(ge=1, le=1024, strict=True), WHOLE] | None = None
    #: idle time before the model is unloaded: seconds, or "30s", "10m", "1h"; 0 = once idle, -1 = never
    ttl: (Annotated[int, Field(ge=-1, le=MAX_TTL, strict=True), WHOLE]
          | Annotated[float, Field(ge=-1, le=MAX_TTL, allow_inf_nan=False, strict=True)]
          | Annotated[str, Field(max_length=64),
                      WithJsonSchema({"type": "string", "pattern": TTL_PATTERN, "maxLength": 64})]
          | None) = None
    #: bring the model back, with these settings, whenever the server starts
    restore: Annotated[bool, Field(strict=True)] = False
    #: launch even when the memory estimate says it will not fit
    force: Annotated[bool, Field(strict=True)] = False
    #: llama.cpp: requests decoded together in one batch (each with the whole context); more wait their turn
    n_parallel: Annotated[int, Field(ge=1, le=64, strict=True), WHOLE] | None = None

    def request(self) -> dict[str, Any]:
        """The launch as plain data: what the plan is built from and what launches.json keeps."""
        return self.model_dump(include=set(LAUNCH_FIELDS))

    def ttl_seconds(self, default: float | None) -> float | None:
        """Idle seconds before the model is unloaded (None: never); `default` when the launch names none."""
        return default if self.ttl is None else parse_duration(self.ttl)


#: The launch fields the server knows: what it keeps of a launch (launches.json); other keys are dropped.
LAUNCH_FIELDS = frozenset(LaunchBody.model_fields)


#: Token counts and ids are C ints in the engines; JSON numbers past 64 bits do not parse at all.
INT32_MAX = 2**31 - 1


#: Stop words a request may give, and their longest length (OpenAI allows 4; llama.cpp's server any): each
#: is looked for after every token, so thousands of them slowed every stream of the model.
MAX_STOP_WORDS = 16
MAX_STOP_LENGTH = 256
#: Messages in one chat request (a conversation that long would not fit any context anyway).
MAX_MESSAGES = 10_000
#: Choices one request may ask for (`n`): each is a generation of its own.
MAX_CHOICES = 16


def _document_unserved(schema: dict[str, Any]) -> None:
    """The OpenAI fields refused with a 400 (structured.UNSERVED), in the documented body."""
    for key, (_, why) in UNSERVED.items():
        schema.setdefault("properties", {}).setdefault(key, {"description": f"refused when set: {why}"})


class GenerationBody(_Body):
    """Numbers and switches are strict: `true` is not a temperature, "3" is not a token count; each is bounded
    by what the engines read."""

    model_config = ConfigDict(extra="allow", protected_namespaces=(), json_schema_extra=_document_unserved)

    model: Annotated[str, Field(max_length=200)]
    #: At least 1, as OpenAI's API demands (a negative or zero count is a 400, not a silent default).
    max_tokens: Annotated[int, Field(ge=1, le=INT32_MAX, strict=True), WHOLE] | None = None
    #: OpenAI's newer name for max_tokens (max_tokens wins when both are given)
    max_completion_tokens: Annotated[int, Field(ge=1, le=INT32_MAX, strict=True), WHOLE] | None = None
    #: 0 is greedy.
    temperature: Annotated[float, Field(ge=0, le=100, allow_inf_nan=False, strict=True)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False, strict=True)] | None = None
    top_k: Annotated[int, Field(ge=-1, le=INT32_MAX, strict=True), WHOLE] | None = None
    stop: (Annotated[str, Field(max_length=MAX_STOP_LENGTH)]
           | Annotated[list[Annotated[str, Field(min_length=1, max_length=MAX_STOP_LENGTH)]],
                       Field(max_length=MAX_STOP_WORDS)]
           | None) = None
    stop_token_ids: Annotated[list[Annotated[int, Field(ge=0, le=INT32_MAX, strict=True), WHOLE]],
                              Field(max_length=64)] | None = None
    #: Within what a JSON number carries exactly (2**53); the engines use 32 bits of it.
    seed: Annotated[int, Field(ge=-(2**53), le=2**53, strict=True), WHOLE] | None = None
    presence_penalty: Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False, strict=True)] | None = None
    frequency_penalty: Annotated[float, Field(ge=-2, le=2, allow_inf_nan=False, strict=True)] | None = None
    #: 1 = none; above 1 discourages repeats (the engines divide by it)
    repeat_penalty: Annotated[float, Field(gt=0, le=100, allow_inf_nan=False, strict=True)] | None = None
    ignore_eos: Annotated[bool, Field(strict=True)] | None = None
    stream: Annotated[bool, Field(strict=True)] = False
    #: {"include_usage": true}: the last chunk carries the usage (it always does here)
    stream_options: dict[str, Any] | None = None
    #: Choices to generate for the prompt, at once (on the batch engine's slots); with a seed, choice i
    #: uses seed + i
    n: Annotated[int, Field(ge=1, le=MAX_CHOICES, strict=True), WHOLE] = 1
    #: The answer's form, enforced while it is written: {"type": "json_object"} or {"type": "json_schema",
    #: "json_schema": {"name", "schema", "strict"}}
    response_format: ResponseFormat | None = None
    #: llama.cpp's extension: a GBNF grammar the answer must follow (llama.cpp engine)
    grammar: Annotated[str, Field(max_length=64 * 1024)] | None = None

    def logprob_count(self) -> int | None:
        """Alternatives to give with each token's log probability; None: no log probabilities."""
        return None


class CompletionBody(GenerationBody):
    """POST /v1/completions: a prompt to continue."""

    #: One prompt (OpenAI's list form is read when it holds exactly one).
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]
    #: The log probability of each generated token, with this many likeliest alternatives (0 to 5)
    logprobs: Annotated[int, Field(ge=0, le=5, strict=True), WHOLE] | None = None

    def logprob_count(self) -> int | None:
        return self.logprobs


class ContentPart(BaseModel):
    """One of OpenAI's content parts; the text ones are read (other kinds are refused by the model's worker)."""

    model_config = ConfigDict(extra="ignore")
    type: Annotated[str, Field(max_length=64)]
    text: Annotated[str, Field(strict=True)] | None = None


class FunctionCall(BaseModel):
    """A call an assistant message made: the function's name and its arguments as JSON text."""

    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(max_length=64)]
    arguments: Annotated[str, Field(max_length=1024 * 1024)] = "{}"


class ToolCall(BaseModel):
    """One of an assistant message's `tool_calls`."""

    model_config = ConfigDict(extra="ignore")
    id: Annotated[str, Field(max_length=256)] = ""
    type: Literal["function"] = "function"
    function: FunctionCall


ROLES = ("system", "user", "assistant", "tool")


class ChatMessage(_Body):
    """One message of a chat request (OpenAI's shape; text parts only)."""

    #: "tool" answers an assistant's tool call (with its tool_call_id)
    role: Annotated[str, Field(json_schema_extra={"enum": ["system", "user", "assistant", "tool"]})]
    #: Text, or OpenAI's content parts (the text parts are read); may be null on an assistant's tool call
    content: str | Annotated[list[ContentPart], Field(max_length=1000)] | None = None
    #: An assistant's calls (the conversation's earlier turns)
    tool_calls: Annotated[list[ToolCall], Field(max_length=128)] | None = None
    #: A tool message's answer to this call
    tool_call_id: Annotated[str, Field(max_length=256)] | None = None

    def forwarded(self) -> wire.ChatMessage:
        """What the worker gets: the role, the text and the calls, nothing a client added beside them."""
        content = self.content
        if content is None:
            if not (self.role == "assistant" and self.tool_calls):
                raise XituiError("content: required (only an assistant's tool call may leave it out)")
            content = ""
        if isinstance(content, list):
            texts = []
            for i, part in enumerate(content):
                if part.type != "text":
                    raise XituiError(f"content[{i}]: {part.type!r} parts are not read by this server (only text)")
                if part.text is None:
                    raise XituiError(f"content[{i}].text: required for a text part")
                texts.append(part.text)
            content = "".join(texts)
        if self.role not in ROLES:
            raise XituiError(f"role: {self.role!r} is not system, user, assistant or tool")
        message: wire.ChatMessage = {"role": cast(wire.Role, self.role), "content": content}
        if self.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": c.function.name, "arguments": c.function.arguments}} for c in self.tool_calls]
        if self.tool_call_id is not None:
            message["tool_call_id"] = self.tool_call_id
        return message


def _conversation(schema: dict[str, Any]) -> None:
    """What every chat format reads: a system message may open the conversation, and only open it."""
    message = schema["items"]
    schema["prefixItems"] = [message]
    schema["items"] = {"allOf": [message, {"properties": {"role": {"enum": ["user", "assistant", "tool"]}}}]}


class Function(BaseModel):
    """A function a model may call: its name, what it does, the JSON schema of its arguments."""

    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    description: Annotated[str, Field(max_length=8192)] | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(BaseModel):
    """One of a chat request's `tools`."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: Function


class FunctionName(BaseModel):
    """The function a named `tool_choice` asks for."""

    model_config = ConfigDict(extra="ignore")
    name: Annotated[str, Field(max_length=64)]


class NamedToolChoice(BaseModel):
    """`tool_choice` naming the function the answer must call."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["function"] = "function"
    function: FunctionName


class ChatBody(GenerationBody):
    """POST /v1/chat/completions: a conversation to answer."""

    messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=MAX_MESSAGES,
                                                 json_schema_extra=_conversation)]
    #: Functions the model may call (a model with the `tools` ability)
    tools: Annotated[list[Tool], Field(max_length=128)] | None = None
    #: "auto" (the model decides), "none", "required" (some call, held to its schema while it is written),
    #: or {"type": "function", "function": {"name": ...}} (that call)
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    #: With a forced call: one or more calls (true) or exactly one
    parallel_tool_calls: Annotated[bool, Field(strict=True)] | None = None
    #: The log probability of each generated token in `choices[].logprobs.content`
    logprobs: Annotated[bool, Field(strict=True)] | None = None
    #: With logprobs: this many likeliest alternatives at each position (0 to 20)
    top_logprobs: Annotated[int, Field(ge=0, le=20, strict=True), WHOLE] | None = None

    def logprob_count(self) -> int | None:
        if self.top_logprobs and not self.logprobs:
            raise XituiError("top_logprobs: needs logprobs: true")
        return (self.top_logprobs or 0) if self.logprobs else None


class EmbeddingBody(_Body):
    """POST /v1/embeddings: texts to turn into vectors."""

    model: str
    #: At most 2048 texts per request, as OpenAI's API
    input: str | Annotated[list[str], Field(min_length=1, max_length=2048)]
    #: "float" (lists of numbers) or "base64" (little-endian float32, what OpenAI's client asks for)
    encoding_format: Literal["float", "base64"] = "float"
    #: Cut inputs longer than the model's max_tokens (the response says so); false refuses them.
    truncate: bool = True


class RerankBody(_Body):
    """POST /v1/rerank (Xinference's route and body; Cohere's and Jina's fields): documents to order by their
    relevance to a query."""

    model: str
    query: Annotated[str, Field(min_length=1)]
    #: At most 1024 documents per request (Cohere's limit is 1000)
    documents: Annotated[list[str], Field(min_length=1, max_length=1024)]
    #: Return only the best n (default: all)
    top_n: Annotated[int, Field(ge=1, le=1_000_000, strict=True), WHOLE] | None = None
    #: Give each result its document's text
    return_documents: bool | None = None
    #: Give the input tokens in `meta.tokens` (Xinference's field)
    return_len: bool | None = None


_PARAM_KEYS = ("max_tokens", "temperature", "top_p", "top_k", "stop", "stop_token_ids", "seed",
               "presence_penalty", "frequency_penalty", "repeat_penalty", "ignore_eos")


#: Tokens generated when a request names no max_tokens (OpenAI's completions default of 16 cuts answers
#: short; running on to the end of the context keeps a base model busy for minutes).
DEFAULT_MAX_TOKENS = 256


def choice_params(body: GenerationBody) -> list[wire.Params]:
    """The worker's parameters for each of the `n` choices a request asks for (seeds apart)."""
    params = generation_params(body)
    if body.n == 1:
        return [params]
    seed = params.get("seed")
    return [_seeded(params, seed + i if seed is not None else None) for i in range(body.n)]


def _seeded(params: wire.Params, seed: int | None) -> wire.Params:
    choice = params.copy()
    if seed is not None:
        choice["seed"] = seed
    return choice


def generation_params(body: GenerationBody) -> wire.Params:
    """What the worker gets of a request; raises XituiError (400) for what it would not serve."""
    refuse_unserved(body.model_extra)
    params = cast(wire.Params, {k: getattr(body, k) for k in _PARAM_KEYS if getattr(body, k) is not None})
    params.setdefault("max_tokens", body.max_completion_tokens or DEFAULT_MAX_TOKENS)
    form = constraint(body.response_format, body.grammar)
    if form is not None:
        params["constraint"] = form
    count = body.logprob_count()
    if count is not None:
        params["logprobs"] = count
    return params


_B = TypeVar("_B", bound=BaseModel)


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A route's documented body, for routes that read it themselves; nested models are written inline
    (a `$defs` reference would point nowhere inside the OpenAPI document)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


#: Bodies larger than this are parsed and checked off the event loop (server/off_loop.py): tens of MiB of JSON
#: take a second or more, which every other request and stream would otherwise wait for.
INLINE_BODY = 64 * 1024
#: Longest launch (or estimate) body: its fields and 64 environment variables of 4 KiB fit in a quarter of it.
LAUNCH_BODY = 1024 * 1024


async def read_body(request: Request, model: type[_B], limit: int | None = None) -> _B:
    """Parse and check a JSON body; any problem is a 400 with a one-line detail. A body over `limit` bytes is
    refused (413) before it is read when its Content-Length says so, else as soon as it passes the limit."""
    if limit is None:
        raw = await request.body()
    else:
        raw = await _read_at_most(request, limit)
    if len(raw) > INLINE_BODY:
        return await off_loop(parse_body, raw, model)
    return parse_body(raw, model)


async def _read_at_most(request: Request, limit: int) -> bytes:
    refusal = BodyTooLarge(f"request body larger than {limit // 1024} KiB: this route reads at most that")
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > limit:
        raise refusal
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise refusal
        chunks.append(chunk)
    return b"".join(chunks)


def parse_body(raw: bytes, model: type[_B]) -> _B:
    data = json_body.loads(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise XituiError(problems_text(exc.errors())) from None


#: Names pydantic gives the members of a union in an error's location: not fields, left out of the line.
_UNION_TAGS = frozenset({"str", "int", "float", "bool", "none"})


def problems_text(errors: Sequence[Any]) -> str:
    """Pydantic's (or FastAPI's) validation errors as one line: `field.path: message; ...`, one message per
    field (a value that matches no member of a union fails each member: the first says enough)."""
    problems: dict[str, str] = {}
    for err in errors:
        if err.get("type") == "json_invalid":
            return "request body is not valid JSON"
        parts = [str(p) for p in err.get("loc", ()) if p != "body"]
        parts = [p for p in parts if p not in _UNION_TAGS and "[" not in p and not p.startswith(("constrained-",
                                                                                               "function-"))]
        loc = ".".join(parts)[:200] or "body"
        message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.setdefault(loc, message)
    lines = [f"{loc}: {message}" for loc, message in problems.items()]
    more = f"; and {len(lines) - 5} more" if len(lines) > 5 else ""
    return "; ".join(lines[:5]) + more or "invalid request"
