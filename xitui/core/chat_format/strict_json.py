"""Reading JSON that a model wrote (a tool call's arguments): only what every JSON parser reads back.

Python's `json` reads `NaN`, `Infinity` and numbers too large for a float (`1e999` becomes inf, which it
then writes as `Infinity`): none of them is JSON, and a client's parser fails on them. It also recurses once
per level of nesting, so text a thousand levels deep raises RecursionError wherever it is read. `loads`
refuses all of these with ValueError, the depth counted without recursing before anything is parsed.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

#: Levels of nesting a model's call may have (arguments of real functions rarely go past five or six).
MAX_DEPTH = 64


#: A JSON string (skipped whole, escapes included; an unclosed one runs to the end) or a bracket.
_PARTS = re.compile(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', re.DOTALL)


def depth(text: str) -> int:
    """The deepest nesting of objects and lists in JSON text, counted in one pass (strings skipped)."""
    deepest = level = 0
    for found in _PARTS.finditer(text):
        char = found.group()
        if char in ("[", "{"):
            level += 1
            deepest = max(deepest, level)
        elif char in ("]", "}"):
            level -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is too large for a JSON number")
    return value


def loads(text: str, max_depth: int = MAX_DEPTH) -> Any:
    """`json.loads` of standard JSON only: ValueError for NaN, Infinity, numbers past a float's range and
    nesting deeper than `max_depth`."""
    if depth(text) > max_depth:
        raise ValueError(f"nested deeper than {max_depth} levels")
    return json.loads(text, parse_constant=_no_constant, parse_float=_finite)
