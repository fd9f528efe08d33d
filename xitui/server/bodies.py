"""Request bodies of the server's routes, and reading them (orjson + pydantic, one-line errors)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from xitui.core.errors import XituiError


class _Body(BaseModel):
    """Extra keys are kept: clients send more than these."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


class RegisterBody(_Body):
    model: str | dict[str, Any]
    persist: bool = False
    worker_ip: str | None = None


class LaunchBody(_Body):
    model_uid: str | None = None
    model_name: str
    model_type: str = "LLM"
    model_engine: str | None = None
    model_format: str | None = None
    model_size_in_billions: int | float | str | None = None
    quantization: str | None = None
    replica: int = 1
    n_gpu: int | str | None = "auto"
    envs: dict[str, str] | None = None
    #: xitui's own: tokens of context to allocate (default: the spec's context_length)
    context_length: int | None = None
    #: idle time before the model is unloaded: seconds, or "30s", "10m", "1h"; 0 = once idle, -1 = never
    ttl: int | float | str | None = None
    #: bring the model back, with these settings, whenever the server starts
    restore: bool = False
    #: launch even when the memory estimate says it will not fit
    force: bool = False


class GenerationBody(_Body):
    model: str
    #: At least 1, as OpenAI's API demands (a negative or zero count is a 400, not a silent default).
    max_tokens: Annotated[int, Field(ge=1)] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    ignore_eos: bool | None = None
    stream: bool = False


class CompletionBody(GenerationBody):
    prompt: str | list[str]


class ChatBody(GenerationBody):
    messages: list[dict[str, Any]]


class EmbeddingBody(_Body):
    model: str
    input: str | list[str]
    #: "float" (lists of numbers) or "base64" (little-endian float32, what OpenAI's client asks for)
    encoding_format: str = "float"
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
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}


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
