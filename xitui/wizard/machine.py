"""A small step machine: steps run in order, `<` (the Back a question raises) goes back to the step asked
before, and a step may send the user to another by name (the review sends each problem to the step that
owns its field). Each step says which spec fields it owns and how the review offers it for a change."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from xitui.wizard.ask import Back


@dataclass
class Jump:
    """Go to the named step next."""

    step: str


@dataclass
class Step:
    """One question (or a few about one thing) of the wizard."""

    name: str
    run: Callable[[Any], Jump | None]  # None: done, go on; a Jump: go there; raises Back: go back
    applies: Callable[[Any], bool] = lambda _w: True
    #: Patterns of the spec fields (as validation problems name them) whose answers this step gives.
    fields: tuple[str, ...] = ()
    #: How the review offers this step for a change ("change the {label}"); empty: it does not.
    label: str = ""
    #: When the review offers it (default: when the step applies; the weights' location always is).
    editable_when: Callable[[Any], bool] | None = None
    _patterns: list[re.Pattern[str]] = field(init=False, repr=False, default_factory=list)

    def __post_init__(self) -> None:
        self._patterns = [re.compile(p) for p in self.fields]

    def owns(self, problem: str) -> int:
        """How much of `problem` names a field of this step (the longest match: the most specific owner)."""
        return max((m.end() - m.start() for p in self._patterns if (m := p.search(problem))), default=-1)


def owner(steps: Sequence[Step], problem: str, fallback: str) -> str:
    """The step that owns the field a validation problem names (`model_specs[0].model_id: ...`): the one
    whose pattern matches most of it, so `model_specs[0].model_id` goes to the Hub id rather than to the
    weights' location that owns `model_specs` as a whole."""
    best = max(steps, key=lambda s: s.owns(problem), default=None)
    return best.name if best is not None and best.owns(problem) >= 0 else fallback


def editable(steps: Sequence[Step], context: Any) -> list[tuple[str, str]]:
    """(step name, label) of the steps the review offers to change, for this draft."""
    return [(s.name, s.label) for s in steps if s.label and (s.editable_when or s.applies)(context)]


def run_steps(steps: Sequence[Step], context: Any, start: int = 0) -> None:
    """Run `steps` against `context` to the end, honouring Back and Jump."""
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
        try:
            result = step.run(context)
        except Back:
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
