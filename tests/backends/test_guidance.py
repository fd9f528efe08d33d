"""What holds an answer to a grammar (backends/guidance.py) against grammars and schemas written to hurt: each is
refused in one line before it costs anything, or holds the answer with bounded work per token. On the bundled
SmolLM2 vocabulary, read from its GGUF (no weights)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from xitui.backends import guidance
from xitui.backends.base import RequestError

pytestmark = pytest.mark.slow  # reads a real vocabulary (about a second)


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[Any]:
    llama_cpp = pytest.importorskip("llama_cpp")
    from xitui.core import bundled

    path = bundled._package_dir(bundled.SMOLLM_PACKAGE) / bundled.SMOLLM_FILE
    model = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    tok = guidance.llama_tokenizer(llama_cpp.llama_model_get_vocab(model._model.model))
    yield tok  # (the vocabulary outlives llguidance's view of it)
    model.close()


def walk(tok: Any, grammar: str, steps: int = 80) -> tuple[int, float]:
    """Take the lowest allowed non-end token `steps` times: (tokens taken, the slowest mask in seconds)."""
    import numpy as np

    guide = guidance.Guide(tok, grammar)
    worst = 0.0
    for taken in range(steps):
        start = time.perf_counter()
        mask = guide.allowed()
        worst = max(worst, time.perf_counter() - start)
        ids = np.nonzero(guidance.guide_bits(mask, tok.vocab_size))[0]
        assert len(ids)
        assert guide.take(int(ids[-1]))
        if guide.done:
            return taken + 1, worst
    return steps, worst


@pytest.mark.parametrize(("grammar", "says"), [
    ("root ::= " + "(" * 5000 + '"a"' + ")" * 5000, "nested deeper than 48"),
    ('root ::= "a"{0,100000}', "repetition of more than 4096"),
    ("root ::= <[2147483647]>", "cannot be parsed"),
    ("not a grammar", "cannot be parsed"),
], ids=["deep", "repeat", "token-id", "prose"])
def test_hostile_gbnf_is_refused_in_one_line(tokenizer: Any, grammar: str, says: str) -> None:
    with pytest.raises(RequestError) as refused:
        guidance.compile_for({"gbnf": grammar}, tokenizer)
    message = str(refused.value)
    assert message.startswith("grammar: ") and "\n" not in message and len(message) < 400, message
    assert says in message, message


def test_parens_inside_strings_and_classes_are_not_nesting() -> None:
    guidance.check_gbnf_shape('root ::= "' + "(" * 500 + '" [(((((]  # ((((((((\n')
    guidance.check_gbnf_shape('root ::= "a\\"(((" ("b")')


@pytest.mark.parametrize("schema", [
    {"type": "string", "maxLength": 100000},
    {"type": "array", "items": {"type": "integer"}, "maxItems": 100000},
    {"type": "string", "pattern": "^a{0,60000}$"},
    {"type": "string", "pattern": "^((a|a)*(a|a)*)*b$"},
    {"type": "object", "properties": {"x": {"type": "string", "maxLength": 100000}}, "required": ["x"]},
])
def test_schemas_that_crashed_llama_cpp_hold_with_bounded_work(tokenizer: Any, schema: dict[str, Any]) -> None:
    start = time.perf_counter()
    grammar = guidance.compile_for({"json_schema": schema}, tokenizer)
    assert time.perf_counter() - start < 2.0
    taken, worst = walk(tokenizer, grammar)
    assert taken > 0
    assert worst < 0.25, f"one token's mask took {worst * 1000:.0f} ms"


def test_ambiguous_grammar_whose_stacks_double_per_level_stays_cheap(tokenizer: Any) -> None:
    rules = "\n".join(f'x{i} ::= "a" x{i + 1} | "a" x{i + 1} | ""' for i in range(40))
    grammar = guidance.compile_for({"gbnf": f'root ::= x0 "b"\n{rules}\nx40 ::= "a"'}, tokenizer)
    taken, worst = walk(tokenizer, grammar, 60)
    assert taken > 0 and worst < 0.25


def test_a_grammar_that_allows_nothing_more_ends_with_a_reason(tokenizer: Any) -> None:
    grammar = guidance.compile_for({"gbnf": 'root ::= "ab"'}, tokenizer)
    guide = guidance.Guide(tokenizer, grammar)
    a_then_c = tokenizer.tokenize_str("ac")
    assert guide.take(a_then_c[0]) if len(a_then_c) == 2 else True
    assert not guide.take(tokenizer.tokenize_str("zzz")[0])  # refused, and nothing moved
    assert guide.allowed().any()


def test_objects_take_only_the_keys_they_name_unless_they_say_otherwise() -> None:
    schema = {"type": "object", "properties": {"a": {"type": "object", "properties": {"b": {"type": "integer"}}},
                                               "c": {"type": "object", "additionalProperties": True,
                                                     "properties": {"d": {}}}},
              "$defs": {"e": {"properties": {"f": {}}}}, "anyOf": [{"properties": {"g": {}}}]}
    held = guidance.closed(schema)
    assert held["additionalProperties"] is False
    assert held["properties"]["a"]["additionalProperties"] is False
    assert held["properties"]["c"]["additionalProperties"] is True
    assert held["$defs"]["e"]["additionalProperties"] is False
    assert held["anyOf"][0]["additionalProperties"] is False
    assert "additionalProperties" not in schema  # the request's own schema is left as it came


def test_a_gemma_forced_call_grows_with_neither_bound_of_an_array() -> None:
    """Gemma's call syntax is written as GBNF here: an array's maxItems was a choice per count (37 GiB of
    grammar at 100000); now a counted repetition, refused past MAX_REPEAT before any parser sees it."""
    from xitui.core import tool_calls

    def forced(max_items: int) -> dict[str, Any]:
        tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
            "xs": {"type": "array", "items": {"type": "integer"}, "maxItems": max_items}}}}}]
        return {"tool_call": {"schema": tool_calls.call_schema(tools, "gemma"), "format": "gemma", "several": False}}

    kind, text, _ = guidance.source(forced(4000))
    assert kind == "gbnf" and len(text) < 2000
    start = time.perf_counter()
    with pytest.raises(RequestError, match="repetition of more than 4096"):
        guidance.source(forced(100_000))
    assert time.perf_counter() - start < 0.1
