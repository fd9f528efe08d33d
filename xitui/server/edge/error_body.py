"""The body of every error the server answers: `detail`, one line (Xinference's key: its client and xitui's
read it), and OpenAI's `error` object beside it, the same line as its `message` (the openai SDK reads that
into its exceptions; a mid-stream error with a string there showed only "An error occurred during
streaming"), and `"type": "error"` above them, which makes the same body Anthropic's envelope (its SDK and
Claude Code read `error.type` and `error.message`)."""

from __future__ import annotations

from typing import Any

#: OpenAI's error types by status (its own words where it has them).
TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error", 404: "not_found_error",
         409: "conflict_error", 413: "invalid_request_error", 415: "invalid_request_error", 429: "rate_limit_error",
         431: "invalid_request_error"}


def openai_error(message: str, status: int) -> dict[str, Any]:
    """OpenAI's error object: message, type, param, code."""
    kind = TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"message": message, "type": kind, "param": None, "code": None}


def error_body(detail: str, status: int) -> dict[str, Any]:
    """An error answer's JSON body."""
    return {"type": "error", "detail": detail, "error": openai_error(detail, status)}
