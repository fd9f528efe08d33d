"""The large-body JSON reader (server/edge/json_body.py): what orjson gives, within a budget, beside the event loop."""

from __future__ import annotations

import asyncio
import json
import random
import time

import orjson
import pytest

from xitui.core.errors import XituiError
from xitui.server.edge import json_body
from xitui.server.edge.json_body import BodyTooLarge, nested_deeper_than
from xitui.server.edge.json_body import read_values as slow_path

VALID = [
    b'{"a": 1, "b": [true, false, null], "c": {"d": "e"}}', b"[]", b"{}", b' [ ] ', b'"x"', b"0", b"-0", b"1.5",
    b"-2.5e-3", b"1E5", b"18446744073709551615", b"18446744073709551616", b"-9223372036854775808",
    b"-9223372036854775809", b"123456789012345678901234567890", b'"\\ud83d\\ude00 \\u00e9 \\n \\" \\\\ \\/"',
    b'{"a":1,"a":2}', '{"ключ": "значение", "emoji": "😀"}'.encode(), b"[[[[[]]]]]", b'[1,[2,[3,{"x":[4]}]]]',
    b"\n\t\r [1]\n",
]
INVALID = [
    b"", b" ", b"[", b"]", b"[1,]", b'{"a":1,}', b"{a:1}", b"[1 2]", b"NaN", b"[Infinity]", b"-", b"01", b"1.",
    b".5", b"1e400", b'"\\ud800"', b'"\\udc00 x"', b'"a\tb"', b'"open', b"[1] 2", b"tru", b"nul", b'{"a" 1}',
    b'{"a":}', b"\xef\xbb\xbf1", b"[1,,2]", b'"\\x"', b"\xff",
]


@pytest.mark.parametrize("raw", VALID)
def test_valid_bodies_read_as_orjson_reads_them(raw: bytes) -> None:
    expected = orjson.loads(raw)
    assert slow_path(raw) == expected
    assert type(slow_path(raw)) is type(expected)


@pytest.mark.parametrize("raw", INVALID)
def test_invalid_bodies_are_one_line_errors_as_orjson_refuses_them(raw: bytes) -> None:
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(raw)
    with pytest.raises(XituiError) as caught:
        slow_path(raw)
    assert "\n" not in str(caught.value)


def test_random_documents_read_the_same() -> None:
    rng = random.Random(7)

    def value(depth: int) -> object:
        kind = rng.randrange(8 if depth < 6 else 5)
        if kind == 0:
            return rng.randint(-(2**70), 2**70)
        if kind == 1:
            return rng.uniform(-1e9, 1e9)
        if kind == 2:
            return "".join(rng.choice('ab"\\\n\u00e9\u4e2d😀 ') for _ in range(rng.randrange(12)))
        if kind == 3:
            return rng.choice([True, False, None])
        if kind == 4:
            return rng.randint(-5, 5)
        if kind in (5, 6):
            return [value(depth + 1) for _ in range(rng.randrange(5))]
        return {f"k{rng.randrange(9)}": value(depth + 1) for _ in range(rng.randrange(5))}

    for _ in range(300):
        raw = json.dumps(value(0), ensure_ascii=rng.random() < 0.5).encode()
        spaced = raw.replace(b",", b" ,\n ").replace(b":", b" : ")
        assert slow_path(raw) == orjson.loads(raw) == slow_path(spaced)


def test_bodies_of_many_values_are_refused_before_they_are_built() -> None:
    raw = b'{"model": "x", "x": [' + b"{}," * 400_000 + b"{}]}"
    started = time.monotonic()
    with pytest.raises(BodyTooLarge) as caught:
        json_body.loads(raw)
    assert caught.value.status_code == 413 and "250000 JSON values" in str(caught.value)
    assert time.monotonic() - started < 5
    # many commas inside strings are not values: prose with commas reads whole
    prose = orjson.dumps({"documents": ["a, b, c, " * 20_000] * 4})
    assert json_body.loads(prose) == orjson.loads(prose)


def test_nesting_is_capped_without_recursion() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(XituiError, match="nested deeper than 1024"):
        slow_path(deep)
    with pytest.raises(XituiError):
        json_body.loads(b'{"x": ' + deep + b"}")
    assert nested_deeper_than("[" * 65 + "x", 64) and not nested_deeper_than("[" * 64 + "x", 64)
    assert nested_deeper_than('{"a": ' * 65 + "1" + "}" * 65, 64)
    assert not nested_deeper_than("not json at all {{{", 64)


def test_the_event_loop_keeps_running_while_a_large_body_is_read() -> None:
    """orjson holds Python's lock while it builds objects (in a thread, this 60 MiB body stopped the loop for
    0.53 s); the value-by-value reader lets the loop run, and stops at the budget."""
    raw = b'{"model_name": "x", "x": [' + b'{"a":1},' * (60 * 1024 * 1024 // 8) + b"{}]}"

    async def slowest_tick() -> tuple[float, float]:
        worst, done = 0.0, False

        async def ticker() -> None:
            nonlocal worst
            while not done:
                start = time.perf_counter()
                await asyncio.sleep(0.001)
                worst = max(worst, time.perf_counter() - start)

        task = asyncio.create_task(ticker())
        started = time.perf_counter()
        with pytest.raises(BodyTooLarge):
            await asyncio.to_thread(json_body.loads, raw)
        took = time.perf_counter() - started
        done = True
        await task
        return worst, took

    worst, took = asyncio.run(slowest_tick())
    assert worst < 0.25, f"the loop waited {worst:.3f} s while the body was read ({took:.2f} s)"


@pytest.mark.parametrize(("value", "says"), [
    ([], "input: give at least one text"),
    (["a"] * 2049, "input: at most 2048 texts, got 2049"),
    ([[1, 2, 3]], "input: texts only: token ids are not taken (they would be another tokenizer's: LangChain's "
                  "OpenAIEmbeddings sends tiktoken's unless given check_embedding_ctx_length=False)"),
    ([1, 2, 3], "input: texts only: token ids are not taken"),
    ([True], "input: texts only (token ids are not taken)"),
    (["a", 5], "input: texts only"),
    (7, "input: a text or a list of texts"),
    (None, "input: a text or a list of texts"),
    ({"text": "a"}, "input: a text or a list of texts"),
])
def test_an_embedding_requests_input_at_its_worst_is_one_plain_line(value: object, says: str) -> None:
    from xitui.server.api.bodies import EmbeddingBody
    from xitui.server.edge.request_body import parse_body

    with pytest.raises(XituiError) as err:
        parse_body(orjson.dumps({"model": "m", "input": value}), EmbeddingBody)
    assert str(err.value).startswith(says) and "\n" not in str(err.value)
    assert parse_body(b'{"model": "m", "input": ["a", ""]}', EmbeddingBody).input == ["a", ""]
