"""Reading a request body into its pydantic model: bounded, off the event loop when large, every problem one
line (a 400 naming the fields, or a 413)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError
from starlette.requests import Request

from xitui.core.errors import XituiError
from xitui.server.edge import json_body
from xitui.server.edge.json_body import BodyTooLarge
from xitui.server.edge.off_loop import off_loop


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


class Body(BaseModel):
    """Extra keys are kept: clients send more than these."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())


_B = TypeVar("_B", bound=BaseModel)


#: Bodies larger than this are parsed and checked off the event loop (server/edge/off_loop.py): tens of MiB of JSON
#: take a second or more, which every other request and stream would otherwise wait for.
INLINE_BODY = 64 * 1024


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
