"""What `/openapi.json` says beyond FastAPI's defaults: every error answer each route gives, with its
`{"detail": "..."}` body, so that the document is the API (a schemathesis run in the tests holds us to it).

Validation errors are 400 here (one line naming the field), never FastAPI's 422; the request guard's and
the API key's answers (401, 403, 413, 415) come from ASGI layers FastAPI does not see, so they are added to
every operation they apply to.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

#: The model types a path names (any case is accepted; these are the documented spellings).


class OpenAIError(BaseModel):
    """OpenAI's error object: the same line as `detail`, and its type (invalid_request_error, not_found_error,
    authentication_error, permission_error, conflict_error, rate_limit_error, server_error)."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(BaseModel):
    """Every error: one line for people (`detail`, Xinference's key), OpenAI's error object beside it, and
    `type: "error"` (with `error`, Anthropic's envelope)."""

    type: str = "error"
    detail: str
    error: OpenAIError


_WHY = {
    400: "Bad input: the detail names the field and the rule it breaks",
    401: "The server has an API key and the request did not send it ('Authorization: Bearer KEY')",
    403: "Refused: a connection from another user of this machine (server.allow_other_users), a Host or "
         "Origin the server does not serve (DNS rebinding, web pages), or an operation this resource does not "
         "allow (unregistering a builtin model)",
    404: "No such model or registration; for a model unloaded for being idle, the detail says so",
    409: "The launch would not fit in free memory: the detail says what it needs and what is free "
         "(send force: true to launch anyway); or its uid is held by a running or launching model",
    413: "The request body is larger than the server's limit (server.max_body_mib)",
    415: "The request body is not application/json",
    500: "The model's worker failed while answering (it died or raised); the server stays up",
}


def answers(*codes: int) -> dict[int | str, dict[str, Any]]:
    """The `responses=` of a route: these error statuses, each with the error body."""
    return {code: {"model": ErrorBody, "description": _WHY[code]} for code in codes}


def streaming_ok() -> dict[int | str, dict[str, Any]]:
    """A generation route's 200: one JSON body, or server-sent events when the request says stream."""
    return {200: {"description": "The answer; with stream: true, server-sent events (`data: {...}` chunks, then "
                                 "`data: [DONE]`)",
                  "content": {"application/json": {}, "text/event-stream": {"schema": {
                      # one event: its data is a JSON chunk in OpenAI's shape, or [DONE] at the end
                      "type": "object", "required": ["data"],
                      "properties": {"data": {"type": "string"}, "event": {"type": "string"}}}}}}}


def document(app: FastAPI) -> None:
    """Make `app.openapi()` build the document with the error answers described above."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                             description="xitui's server: Xinference's REST API and OpenAI's routes.")
        error_ref = {"$ref": "#/components/schemas/ErrorBody"}
        for path, operations in schema.get("paths", {}).items():
            for method, operation in operations.items():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                added = [403] + ([401] if path != "/v1/cluster/auth" else [])
                if method == "post":
                    added += [413, 415]
                if operation.get("parameters") or method == "post":
                    added.append(400)
                for code in added:
                    responses.setdefault(str(code), {
                        "description": _WHY[code], "content": {"application/json": {"schema": error_ref}}})
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        components.pop("HTTPValidationError", None)
        components.pop("ValidationError", None)
        error_schema = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(error_schema.pop("$defs", {}))
        components["ErrorBody"] = error_schema
        app.openapi_schema = schema
        return schema

    app.openapi = build  # type: ignore[method-assign]
