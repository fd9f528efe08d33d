"""Schemathesis hooks for tests/server/test_openapi.py: point generated requests at the real models.

Random model names only ever reach the 404 branch; these hooks send part of the generated requests to the
bundled models the test launched (uids in XITUI_ST_LLM / XITUI_ST_EMBEDDING), so the inference routes run
for real with generated parameters. Generation is capped at a few tokens to keep the run short. DELETE
routes keep their random names: the run must not terminate the models it is testing.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import schemathesis

LLM = os.environ.get("XITUI_ST_LLM", "st-llm")
EMBEDDING = os.environ.get("XITUI_ST_EMBEDDING", "st-emb")
REGISTERED = {"LLM": "demo-gemma3-270m", "embedding": "demo-minilm"}


_draws = itertools.count()


def _half(value: Any) -> bool:
    """Every other generated value is pointed at the real models (hypothesis repeats its simplest
    examples, so a coin that depends on the value would send those nowhere, or always to one place)."""
    return next(_draws) % 2 == 0


def _path(context: Any) -> tuple[str, str]:
    op = context.operation
    return (op.method.upper(), op.path) if op is not None else ("", "")


@schemathesis.hook
def map_body(context: Any, body: Any) -> Any:
    """Only a name that is there is replaced, and only a valid token count is capped: a generated invalid
    body stays invalid (the negative cases must still be refused)."""
    method, path = _path(context)
    if not isinstance(body, dict) or not _half(body):
        return body
    if path in ("/v1/completions", "/v1/chat/completions") and isinstance(body.get("model"), str):
        body["model"] = LLM
        tokens = body.get("max_tokens")
        valid = isinstance(tokens, int) and not isinstance(tokens, bool)
        if tokens is None or (valid and tokens > 4):
            body["max_tokens"] = 4
    elif path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/responses") \
            and isinstance(body.get("model"), str) and len(body["model"]) <= 200:  # (longer: a negative case)
        body["model"] = LLM
        key = "max_output_tokens" if path == "/v1/responses" else "max_tokens"
        tokens = body.get(key)
        valid = isinstance(tokens, int) and not isinstance(tokens, bool)
        if (tokens is None and path == "/v1/responses") or (valid and tokens > 4):
            body[key] = 4  # (a response without a limit runs to the end of the context)
    elif path == "/v1/embeddings" and isinstance(body.get("model"), str):
        body["model"] = EMBEDDING
    elif path == "/v1/estimate" and isinstance(body.get("model_name"), str):
        kind = str(body.get("model_type", "LLM"))
        body["model_name"] = REGISTERED.get("embedding" if kind.lower() == "embedding" else "LLM")
    return body


@schemathesis.hook
def map_path_parameters(context: Any, path_parameters: Any) -> Any:
    method, _ = _path(context)
    if method != "DELETE" and isinstance(path_parameters, dict) and "model_uid" in path_parameters \
            and _half(path_parameters):
        path_parameters["model_uid"] = LLM
    return path_parameters
