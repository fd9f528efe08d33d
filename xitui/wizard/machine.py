"""A small step machine: steps run in order, `<` goes back to the step asked before, and a step may send the
user to another by name (the review sends each problem to the step that owns its field)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from xitui.wizard.ask import Back


@dataclass
class Jump:
    """Go to the named step next."""

    step: str


@dataclass
class Step:
    name: str
    run: Callable[[Any], Any]  # returns None (done), BACK or a Jump
    applies: Callable[[Any], bool] = lambda _w: True


def run_steps(steps: list[Step], context: Any, start: int = 0) -> None:
    """Run `steps` against `context` to the end, honouring BACK and Jump."""
    index = {step.name: i for i, step in enumerate(steps)}
    history: list[int] = []
    i = start
    forced = False
    while i < len(steps):
        step = steps[i]
        if not forced and not step.applies(context):
            i += 1
            continue
        forced = False
        result = step.run(context)
        if isinstance(result, Back):
            if history:
                i = history.pop()
            elif i > 0:  # back from the first question asked: to the first step, though it was skipped
                i, forced = 0, True
            continue
        history.append(i)
        if isinstance(result, Jump):  # the step asked for runs even if it would be skipped on the way
            i, forced = index[result.step], True
        else:
            i += 1
