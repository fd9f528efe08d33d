"""The wire (xitui/wire.py) is the one place a message kind is declared: every kind the code sends or
dispatches on is one of its types, and each type's kind is its own."""

from __future__ import annotations

import ast
import time
import typing
from pathlib import Path

import orjson

from xitui import wire

PACKAGE = Path(wire.__file__).parent


def declared() -> dict[str, str]:
    """Each kind and the type that declares it."""
    kinds: dict[str, str] = {}
    for name, value in vars(wire).items():
        if typing.is_typeddict(value) and "kind" in value.__annotations__:
            (kind,) = typing.get_args(typing.get_type_hints(value)["kind"])
            assert kind not in kinds, f"{kind!r} is declared by both {kinds[kind]} and {name}"
            kinds[kind] = name
    return kinds


def kinds_in_code() -> list[tuple[str, str]]:
    """(where, kind) for every {"kind": "..."} the package writes and every `x["kind"] == "..."` it tests."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "wire.py":
            continue
        where = str(path.relative_to(PACKAGE.parent))
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value == "kind" and isinstance(value, ast.Constant):
                        found.append((f"{where}:{node.lineno}", value.value))
            elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Subscript):
                index = node.left.slice
                if isinstance(index, ast.Constant) and index.value == "kind":
                    for right in node.comparators:
                        values = right.elts if isinstance(right, (ast.Tuple, ast.Set)) else [right]
                        found += [(f"{where}:{node.lineno}", v.value) for v in values if isinstance(v, ast.Constant)]
    return found


def test_every_kind_the_code_uses_is_declared_in_the_wire() -> None:
    kinds = declared()
    used = kinds_in_code()
    assert len(used) > 30  # the scan sees the server, the worker, the engines and the warm pair
    stray = [f"{where}: {kind!r}" for where, kind in used if kind not in kinds]
    assert not stray, "kinds used but not declared in xitui/wire.py:\n" + "\n".join(stray)


def test_the_kinds_that_end_a_request_are_answers() -> None:
    answers = {typing.get_args(typing.get_type_hints(t)["kind"])[0] for t in typing.get_args(wire.Answer)}
    assert answers >= wire.LAST and answers - wire.LAST == {"counted", "text", "reasoning", "tool_calls"}


def test_done_measures_the_first_token_and_the_speed_after_it() -> None:
    started = time.perf_counter() - 1.0
    first = started + 0.25
    done = wire.done(7, "stop", 12, 31, started, first, cached=4, preempted=1, kv_used=90)
    assert done["id"] == 7 and done["kind"] == "done" and done["finish_reason"] == "stop"
    assert done["usage"] == {"prompt_tokens": 12, "completion_tokens": 31, "total_tokens": 43,
                             "prompt_tokens_details": {"cached_tokens": 4}}
    assert abs(done["ttft"] - 0.25) < 0.01
    assert 35 < done["tokens_per_s"] < 45  # 30 tokens after the first in about 0.75 s
    assert (done["preempted"], done["kv_used"]) == (1, 90)
    # no token at all: no speed, and the wait is the whole time
    empty = wire.done(8, "length", 5, 0, started, None)
    assert empty["tokens_per_s"] == 0.0 and empty["ttft"] >= 1.0 and "prompt_tokens_details" not in empty["usage"]
    assert orjson.loads(orjson.dumps(done)) == done
