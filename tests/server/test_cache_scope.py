"""Whose cached prompts a request may reuse (docs/security.md): the scope the server sends with
each generation, and the worker's reading of it."""

from __future__ import annotations

from starlette.requests import Request

from xitui.backends.base import GenerateParams
from xitui.server.api.routes import cache_scope


def request_with(authorization: bytes | None) -> Request:
    headers = [(b"authorization", authorization)] if authorization is not None else []
    return Request({"type": "http", "method": "POST", "path": "/v1/completions", "headers": headers})


def test_without_a_key_every_request_shares_one_cache():
    assert cache_scope(request_with(b"Bearer anything"), None) is None
    assert cache_scope(request_with(None), None) is None


def test_with_a_key_each_key_is_a_scope_named_by_a_hash_never_the_key():
    first, again = cache_scope(request_with(b"Bearer k-one"), "k-one"), cache_scope(request_with(b"Bearer k-one"), "k-one")
    other = cache_scope(request_with(b"Bearer k-two"), "k-one")
    assert first == again and first != other
    assert first is not None and first.startswith("key:") and "k-one" not in first and len(first) == 36


def test_the_worker_reads_the_scope_and_nothing_else_in_its_place():
    assert GenerateParams.from_request({"cache_key": "key:abc"}).cache_key == "key:abc"
    assert GenerateParams.from_request({"cache_key": {"x": 1}}).cache_key is None
    assert GenerateParams.from_request({}).cache_key is None
