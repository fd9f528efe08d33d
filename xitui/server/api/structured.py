"""What a generation request asks of the answer's form: `response_format` (a JSON object, or JSON that
follows a schema) and llama.cpp's `grammar` extension, turned into the constraint the worker enforces while
the answer is written; and the OpenAI fields this server does not serve, refused with one line instead of
answered without them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from xitui import wire
from xitui.core.chat_format.input_size import check_depth
from xitui.core.chat_format.json_schema import check_schema
from xitui.core.errors import XituiError

#: Longest GBNF grammar a request may give.
MAX_GRAMMAR = 64 * 1024


class JsonSchemaFormat(BaseModel):
    """OpenAI's `response_format.json_schema`: a named schema the answer must follow."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: Annotated[str, Field(max_length=64)] | None = None
    description: Annotated[str, Field(max_length=4096)] | None = None
    #: The JSON schema (only keywords a grammar can enforce: see docs/structured-output.md).
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    #: Always enforced here: the answer is constrained while it is written, whatever this says.
    strict: bool | None = None


class ResponseFormat(BaseModel):
    """`text` (free), `json_object` (any JSON object, or one following `schema`, as llama.cpp's server takes
    it), or `json_schema`."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")


def constraint(response_format: ResponseFormat | None, grammar: str | None) -> wire.Constraint | None:
    """The constraint the worker enforces: {"json": True}, {"json_schema": {...}} or {"gbnf": "..."};
    None for free text. Raises XituiError (a 400) for a schema no grammar can enforce."""
    if grammar is not None:
        if response_format is not None and response_format.type != "text":
            raise XituiError("grammar: give either a grammar or a response_format, not both")
        if len(grammar) > MAX_GRAMMAR or not grammar.strip():
            raise XituiError(f"grammar: a GBNF grammar of at most {MAX_GRAMMAR // 1024} KiB")
        return {"gbnf": grammar}
    if response_format is None or response_format.type == "text":
        return None
    if response_format.type == "json_schema":
        if response_format.json_schema is None:
            raise XituiError("response_format.json_schema: required when the type is json_schema")
        schema = response_format.json_schema.schema_
        where = "response_format.json_schema.schema"
    else:
        schema = response_format.schema_ or {}
        where = "response_format.schema"
    if not schema:
        return {"json": True}
    check_depth(schema, where)  # before check_schema serializes it
    check_schema(schema, where)
    return {"json_schema": schema}


#: What a chat template reads besides a request's chat_template_kwargs (they may not replace these).
TEMPLATE_NAMES = frozenset({"messages", "tools", "add_generation_prompt", "bos_token", "eos_token"})


def template_kwargs(value: Any) -> dict[str, Any]:
    """A request's `chat_template_kwargs` (e.g. {"enable_thinking": false}), checked: names, not too many,
    none of the variables the server gives the template itself."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 32:
        raise XituiError("chat_template_kwargs: an object of at most 32 names")
    for key in value:
        if not isinstance(key, str) or not key.isidentifier() or key in TEMPLATE_NAMES:
            raise XituiError(f"chat_template_kwargs: {key!r} is not a name a request may give the template")
    check_depth(value, "chat_template_kwargs")
    if len(orjson.dumps(value)) > 16 * 1024:
        raise XituiError("chat_template_kwargs: longer than 16 KiB")
    return value


def _set(value: Any) -> bool:
    return value not in (None, False, 0, "", [], {}, "none")


#: OpenAI fields this server does not serve yet, with when a value asks for them: such a request is refused
#: (400) rather than answered as if the field were not there.
UNSERVED: dict[str, tuple[Any, str]] = {
    "functions": (_set, "function calling is not served (and deprecated: tools replaces it)"),
    "function_call": (_set, "function calling is not served (and deprecated: tools replaces it)"),
    "logit_bias": (_set, "logit_bias is not served"),
    "best_of": (lambda v: v not in (None, 1), "best_of is not served (one choice per request)"),
    "echo": (_set, "echo is not served"),
    "suffix": (_set, "suffix (fill in the middle) is not served"),
    "audio": (_set, "audio output is not served"),
    "modalities": (lambda v: v not in (None, ["text"]), "only text output is served"),
    "prediction": (_set, "predicted outputs are not served"),
    "web_search_options": (_set, "web search is not served"),
    "reasoning_effort": (_set, "reasoning_effort is not served yet"),
}


def refuse_unserved(extra: dict[str, Any] | None) -> None:
    """One line for the first OpenAI field a request sets that this server does not serve."""
    for key, value in (extra or {}).items():
        rule = UNSERVED.get(key)
        if rule is not None and rule[0](value):
            raise XituiError(f"{key}: {rule[1]}")
