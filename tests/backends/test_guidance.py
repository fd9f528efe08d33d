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

#: (reads a real vocabulary, about a second; bounds how long grammars take to build)
pytestmark = [pytest.mark.slow, pytest.mark.alone]


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[Any]:
    llama_cpp = pytest.importorskip("llama_cpp")
    from xitui.core.specs import bundled
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
    from xitui.core.chat_format import tool_calls
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


# --- found by trying to break it ---


def _chain(n: int, lark: bool = False) -> str:
    """`n` rules, each naming the next (short names: 4000 of them fit the 64 KiB a request may send)."""
    names = [f"r{i:x}" for i in range(n + 1)]
    head, rule = ("start:", ":") if lark else ("root::=", "::=")
    return f"{head}{names[0]}\n" + "".join(f'{names[i]}{rule}"a" {names[i + 1]}\n' for i in range(n)) \
        + f'{names[-1]}{rule}"b"\n'


def _compile_apart(constraint: dict[str, Any], timeout: float = 60) -> str:
    """compile_for in a process of its own (a crash ends it, not the tests): its one line, or how it died."""
    import json
    import subprocess
    import sys

    code = ("import json, sys, llama_cpp\nfrom xitui.backends import guidance\nfrom xitui.core.specs import bundled\n"
            "path = bundled._package_dir(bundled.SMOLLM_PACKAGE) / bundled.SMOLLM_FILE\n"
            "m = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)\n"
            "tok = guidance.llama_tokenizer(llama_cpp.llama_model_get_vocab(m._model.model))\n"
            "try:\n    guidance.compile_for(json.loads(sys.stdin.read()), tok)\n    print('held')\n"
            "except guidance.RequestError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], input=json.dumps(constraint), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"compiling it killed the process (exit {done.returncode})"
    return done.stdout.strip()


@pytest.mark.parametrize("constraint", [
    {"gbnf": _chain(4000)},  # 58 KiB: SIGSEGV in llguidance's compiler, which recurses along the chain
    {"gbnf": _chain(4000, lark=True)},  # read as Lark (a `start:` line), past the GBNF checks: SIGSEGV
    {"json_schema": {"$defs": {f"d{i}": {"$ref": f"#/$defs/d{i + 1}"} for i in range(3000)} | {
        "d3000": {"type": "string"}}, "$ref": "#/$defs/d0"}},  # 105 KiB of $ref, each naming the next: SIGSEGV
], ids=["gbnf-rules", "lark-rules", "schema-refs"])
def test_chains_of_rules_are_refused_before_the_compiler_recurses_along_them(constraint: dict[str, Any]) -> None:
    start = time.perf_counter()
    said = _compile_apart(constraint)
    assert said != "held" and "\n" not in said, said
    assert time.perf_counter() - start < 10, "refused only after seconds on the thread that prepares every request"


def test_a_chain_of_rules_costs_the_preparing_thread_little(tokenizer: Any) -> None:
    """llguidance's GBNF converter takes time in the square of the rule count (3500 rules: 17 s, while no
    other request of the model could start): refused past MAX_RULES before it runs."""
    start = time.perf_counter()
    with pytest.raises(RequestError, match="more than 512 rules"):
        guidance.compile_for({"gbnf": _chain(2000)}, tokenizer)
    assert time.perf_counter() - start < 0.1
    start = time.perf_counter()
    guidance.compile_for({"gbnf": _chain(500)}, tokenizer)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("constraint", [
    # 34 bytes: a repetition of a repeated lexeme; every mask took 16-32 s (llguidance's forced tokens)
    {"gbnf": 'root ::= x{4000}\nx ::= "a"{4000}'},
    # an ordinary schema: 4000 items of 4000 a's; 17-20 s a mask
    {"json_schema": {"type": "array", "items": {"type": "string", "pattern": "^a{4000}$"},
                     "minItems": 4000, "maxItems": 4000}},
    # 27 bytes of pattern: 1.8 s for the first mask, then the lexer's limit
    {"json_schema": {"type": "string", "pattern": "^(?:a{4000}){4000}$"}},
], ids=["gbnf", "schema-items", "schema-pattern"])
def test_repetitions_of_repetitions_cost_each_token_bounded_work(constraint: dict[str, Any]) -> None:
    """Each mask is computed on the engine's thread, which steps every slot: seconds here are seconds for
    every stream of the model. In a process of its own, so a failure costs this test its timeout only."""
    import json
    import subprocess
    import sys

    code = ("import json, sys, time, numpy as np, llama_cpp\nfrom xitui.backends import guidance\n"
            "from xitui.core.specs import bundled\n"
            "path = bundled._package_dir(bundled.SMOLLM_PACKAGE) / bundled.SMOLLM_FILE\n"
            "m = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)\n"
            "tok = guidance.llama_tokenizer(llama_cpp.llama_model_get_vocab(m._model.model))\n"
            "try:\n    guide = guidance.Guide(tok, guidance.compile_for(json.loads(sys.stdin.read()), tok))\n"
            "except guidance.RequestError as exc:\n    print('refused', exc, flush=True); sys.exit(0)\n"
            "for _ in range(3):\n    start = time.perf_counter()\n"
            "    try:\n        mask = guide.allowed()\n"
            "    except guidance.RequestError as exc:\n        print('ended', exc, flush=True); break\n"
            "    print(time.perf_counter() - start, flush=True)\n"
            "    ids = np.nonzero(guidance.guide_bits(mask, tok.vocab_size))[0]\n"
            "    if not guide.take(int(ids[-1])) or guide.done:\n        break\n")
    try:
        done = subprocess.run([sys.executable, "-c", code], input=json.dumps(constraint), capture_output=True,
                              text=True, timeout=20)
        out = done.stdout
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        pytest.fail(f"three masks took more than 20 s (masks done: {out.split()})")
    for line in out.splitlines():
        if line[:1].isdigit():
            assert float(line) < 0.25, f"one token's mask took {float(line):.2f} s"


def test_a_forced_calls_moved_definitions_and_root_references_compile(tokenizer: Any) -> None:
    """The call schema tool_calls.call_schema writes for parameters with `$defs` and a `#` reference (a tree
    of itself) is one llguidance compiles, and it takes a call that follows it."""
    from xitui.core.chat_format import tool_calls

    tree = {"type": "object", "required": ["label", "colour"], "properties": {
        "label": {"type": "string", "maxLength": 10}, "colour": {"$ref": "#/$defs/Colour"},
        "child": {"anyOf": [{"$ref": "#"}, {"type": "null"}]}}, "$defs": {"Colour": {"enum": ["red", "blue"]}}}
    tools = [{"type": "function", "function": {"name": "tree", "parameters": tree}}]
    constraint = {"tool_call": {"schema": tool_calls.call_schema(tools, "hermes"), "format": "hermes",
                                "several": False}}
    guide = guidance.Guide(tokenizer, guidance.compile_for(constraint, tokenizer))
    text = ('<tool_call>\n{"name": "tree", "arguments": {"label": "a", "colour": "red", "child": '
            '{"label": "b", "colour": "blue", "child": null}}}\n</tool_call>')
    assert all(guide.matcher.consume_token(t) for t in tokenizer.tokenize_str(text))
    wrong = guidance.Guide(tokenizer, guidance.compile_for(constraint, tokenizer))  # a child of another colour
    assert not all(wrong.matcher.consume_token(t) for t in tokenizer.tokenize_str(text.replace("blue", "green")))


def test_what_follows_an_auto_calls_marker_is_held_to_the_tools_schema(tokenizer: Any) -> None:
    """An `auto` answer's call, once the model opens it: the call to one of the tools and its closing marker,
    any white space around; a call to another name, or arguments that break the schema, are refused."""
    import llama_cpp

    from xitui.core.chat_format import tool_calls

    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
    clock = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    grammar = guidance.compile_for({"tool_call": {"schema": tool_calls.call_schema([weather, clock], "hermes"),
                                                  "format": "hermes", "several": False, "after_trigger": True}},
                                   tokenizer)
    from xitui.core.specs import bundled

    path = bundled._package_dir(bundled.SMOLLM_PACKAGE) / bundled.SMOLLM_FILE
    vocab = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)

    def takes(text: str) -> tuple[bool, bool]:
        guide = guidance.Guide(tokenizer, grammar)
        ok = all(guide.take(t) for t in vocab.tokenize(text.encode(), add_bos=False, special=False))
        return ok, guide.done

    assert takes('\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>') == (True, True)
    assert takes('{"name": "get_time", "arguments": {}}</tool_call>') == (True, True)
    assert takes('\n{"name": "get_weather", "arguments": {"city": "Paris"}}')[1] is False  # not closed yet
    assert takes('\n{"name": "get_news", "arguments": {}}')[0] is False
    assert takes('\n{"name": "get_weather", "arguments": {"town": "Paris"}}')[0] is False
    vocab.close()
