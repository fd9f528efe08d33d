"""Request bodies of the server's routes, and reading them (orjson + pydantic, one-line errors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, WithJsonSchema
from starlette.requests import Request

from xitui.core.errors import XituiError


class _Body(BaseModel):
    """Extra keys are kept: clients send more than these."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class RegisterBody(_Body):
    model: str | dict[str, Any]
    persist: bool = False
    worker_ip: str | None = None


#: A time to live as `parse_duration` reads it: seconds, 30s / 10m / 1h30m / 2d, or never (documented;
#: the launch itself checks it, so a bad one gets parse_duration's one line).
TTL_PATTERN = r"^(never|-?[0-9]+(\.[0-9]+)?|([0-9]+(\.[0-9]+)?(ms|s|m|h|d))+)$"


#: The engine names a launch may give (xitui's and Xinference's spellings; any case is read).
ENGINE_NAMES = ("llama.cpp", "llama_cpp", "llama-cpp", "llama-cpp-python", "transformers", "pytorch",
                "sentence_transformers", "sentence-transformers")


class LaunchBody(_Body):
    model_uid: str | None = None
    model_name: Annotated[str, Field(min_length=1)]
    model_type: Annotated[str, Field(json_schema_extra={"enum": ["LLM", "embedding"]})] = "LLM"
    model_engine: Annotated[str, Field(json_schema_extra={"enum": sorted(ENGINE_NAMES)})] | None = None
    model_format: str | None = None
    model_size_in_billions: int | float | str | None = None
    quantization: str | None = None
    replica: Annotated[int, Field(ge=1, le=64)] = 1
    n_gpu: int | str | None = "auto"
    envs: dict[str, str] | None = None
    #: xitui's own: tokens of context to allocate (default: the spec's context_length)
    context_length: Annotated[int, Field(ge=16, le=10_000_000)] | None = None
    #: idle time before the model is unloaded: seconds, or "30s", "10m", "1h"; 0 = once idle, -1 = never
    ttl: int | float | Annotated[str, WithJsonSchema({"type": "string", "pattern": TTL_PATTERN})] | None = None
    #: bring the model back, with these settings, whenever the server starts
    restore: bool = False
    #: launch even when the memory estimate says it will not fit
    force: bool = False
    #: llama.cpp: requests decoded together in one batch (each with the whole context); more wait their turn
    n_parallel: Annotated[int, Field(ge=1, le=64)] | None = None


#: Token counts and ids are C ints in the engines; JSON numbers past 64 bits do not parse at all.
INT32_MAX = 2**31 - 1


class GenerationBody(_Body):
    """Numbers and switches are strict: `true` is not a temperature, "3" is not a token count."""

    model: str
    #: At least 1, as OpenAI's API demands (a negative or zero count is a 400, not a silent default).
    max_tokens: Annotated[int, Field(ge=1, le=INT32_MAX, strict=True)] | None = None
    temperature: Annotated[float, Field(strict=True)] | None = None
    top_p: Annotated[float, Field(strict=True)] | None = None
    top_k: Annotated[int, Field(ge=-1, le=INT32_MAX, strict=True)] | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[Annotated[int, Field(ge=0, le=INT32_MAX, strict=True)]] | None = None
    #: Within what a JSON number carries exactly (2**53); the engines use 32 bits of it.
    seed: Annotated[int, Field(ge=-(2**53), le=2**53, strict=True)] | None = None
    presence_penalty: Annotated[float, Field(strict=True)] | None = None
    frequency_penalty: Annotated[float, Field(strict=True)] | None = None
    #: 1 = none; above 1 discourages repeats (the engines divide by it)
    repeat_penalty: Annotated[float, Field(gt=0, strict=True)] | None = None
    ignore_eos: Annotated[bool, Field(strict=True)] | None = None
    stream: Annotated[bool, Field(strict=True)] = False


class CompletionBody(GenerationBody):
    #: One prompt (OpenAI's list form is read when it holds exactly one).
    prompt: str | Annotated[list[str], Field(min_length=1, max_length=1)]


class ChatMessage(_Body):
    #: The roles every chat format reads; "tool" is read by chat templates that know it (400 elsewhere).
    role: Annotated[str, Field(json_schema_extra={"enum": ["system", "user", "assistant"]})]
    #: Text, or OpenAI's content parts (the text parts are read)
    content: str | list[dict[str, Any]]


def _conversation(schema: dict[str, Any]) -> None:
    """What every chat format reads: a system message may open the conversation, and only open it."""
    message = schema["items"]
    schema["prefixItems"] = [message]
    schema["items"] = {"allOf": [message, {"properties": {"role": {"enum": ["user", "assistant"]}}}]}


class ChatBody(GenerationBody):
    messages: Annotated[list[ChatMessage], Field(min_length=1, json_schema_extra=_conversation)]


class EmbeddingBody(_Body):
    model: str
    input: str | Annotated[list[str], Field(min_length=1)]
    #: "float" (lists of numbers) or "base64" (little-endian float32, what OpenAI's client asks for)
    encoding_format: Literal["float", "base64"] = "float"
    #: Cut inputs longer than the model's max_tokens (the response says so); false refuses them.
    truncate: bool = True


_PARAM_KEYS = ("max_tokens", "temperature", "top_p", "top_k", "stop", "stop_token_ids", "seed",
               "presence_penalty", "frequency_penalty", "repeat_penalty", "ignore_eos")


#: Tokens generated when a request names no max_tokens (OpenAI's completions default of 16 cuts answers
#: short; running on to the end of the context keeps a base model busy for minutes).
DEFAULT_MAX_TOKENS = 256


def generation_params(body: GenerationBody) -> dict[str, Any]:
    params = {k: getattr(body, k) for k in _PARAM_KEYS if getattr(body, k) is not None}
    params.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
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


async def read_body(request: Request, model: type[_B]) -> _B:
    """Parse and check a JSON body; any problem is a 400 with a one-line detail."""
    try:
        data = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise XituiError("request body is not valid JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise XituiError(problems_text(exc.errors())) from None


def problems_text(errors: Sequence[Any]) -> str:
    """Pydantic's (or FastAPI's) validation errors as one line: `field.path: message; ...`."""
    problems = []
    for err in errors:
        if err.get("type") == "json_invalid":
            return "request body is not valid JSON"
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        problems.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(problems) or "invalid request"
