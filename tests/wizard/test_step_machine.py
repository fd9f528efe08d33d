"""The wizard's step machine (back, jump, skip) and its tables, independent of what the questions ask:
a new question must not mean editing key lists in other modules."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from xitui.core.errors import SpecError
from xitui.core.specs.spec import parse_spec
from xitui.wizard.ask import Back
from xitui.wizard.machine import Jump, Step, editable, owner, run_steps
from xitui.wizard.steps import steps


def script(*answers: object) -> tuple[list[Step], list[str]]:
    """Steps a..d; each run takes its next scripted outcome (None, a Jump, or Back to raise)."""
    visited: list[str] = []
    queue = list(answers)

    def run(name: str):
        def step(_context: object) -> Jump | None:
            visited.append(name)
            outcome = queue.pop(0) if queue else None
            if outcome is Back:
                raise Back
            return outcome  # type: ignore[return-value]

        return step

    return [Step(n, run(n)) for n in "abcd"], visited


def test_steps_run_in_order():
    made, visited = script()
    run_steps(made, None)
    assert visited == list("abcd")


def test_back_returns_to_the_step_asked_before():
    made, visited = script(None, None, Back)
    run_steps(made, None)
    assert visited == ["a", "b", "c", "b", "c", "d"]


def test_back_skips_over_steps_that_were_not_asked():
    made, visited = script(None, Back)
    made[1].applies = lambda _c: False  # b is skipped: back from c goes to a
    run_steps(made, None)
    assert visited == ["a", "c", "a", "c", "d"]


def test_back_from_the_first_question_asked_goes_to_the_first_step_even_if_skipped():
    made, visited = script(Back)
    made[0].applies = lambda _c: False
    run_steps(made, None)
    assert visited == ["b", "a", "b", "c", "d"]


def test_a_jump_runs_its_step_even_where_it_would_be_skipped_then_goes_on_from_there():
    made, visited = script(None, None, Jump("b"))
    made[1].applies = lambda _c: False
    run_steps(made, None)
    assert visited == ["a", "c", "d", "b", "c", "d"]


def test_back_after_a_jump_returns_to_the_step_that_jumped():
    made, visited = script(None, None, None, Jump("b"), Back)
    run_steps(made, None)
    assert visited == ["a", "b", "c", "d", "b", "d"]


def _llm_draft(**values: object) -> SimpleNamespace:
    draft = SimpleNamespace(model_type="LLM", get=lambda k, d=None: values.get(k, d), inspection=None)
    return SimpleNamespace(draft=draft, options=SimpleNamespace(source="x.gguf", from_spec=None))


@pytest.mark.parametrize(("problem", "step"), [
    ("model_name: starts with a letter or digit", "name"),
    ("model_specs[0].model_id: looks like 'organisation/repository'", "model_id"),
    ("model_specs[1].quantization: 'q9' is not a quantization", "weights"),
    ("model_specs: at least one entry", "source"),
    ("language: a list of codes", "languages"),
    ("chat_template: unexpected end of template", "chat_format"),
    ("something nobody owns", "source"),
])
def test_each_problem_goes_to_the_step_that_owns_its_field(problem, step):
    assert owner(steps(), problem, fallback="source") == step


def test_every_problem_of_a_broken_spec_has_a_step_that_exists():
    """Real validation problems (not hand-written ones) find their owners among the real steps."""
    spec = {"version": 2, "model_name": "bad name!", "model_lang": ["en"], "model_ability": ["chat"],
            "context_length": -1, "model_family": "nonesuch", "chat_template": "{% if %}",
            "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "x", "quantization": "Q4_K_M"}]}
    with pytest.raises(SpecError) as caught:
        parse_spec("LLM", spec)
    names = {s.name for s in steps()}
    owners = [owner(steps(), p, fallback="?") for p in caught.value.problems]
    assert "?" not in owners and set(owners) <= names
    assert "name" in owners and "context_length" in owners


def test_the_review_offers_the_steps_that_apply_to_the_draft_by_their_labels():
    offered = dict(editable(steps(), _llm_draft(model_ability=["chat"])))
    assert offered["name"] == "model name" and offered["chat_format"] == "chat format"
    assert "weights" in offered and "source" in offered  # always offered for an LLM
    assert "dimensions" not in offered  # an embedding model's question
    embedding = _llm_draft()
    embedding.draft.model_type = "embedding"
    offered = dict(editable(steps(), embedding))
    assert "dimensions" in offered and "weights" not in offered and "chat_format" not in offered


def test_step_names_are_unique_and_jumps_name_real_steps():
    names = [s.name for s in steps()]
    assert len(names) == len(set(names))
    assert {"abilities"} <= set(names)  # ask_abilities jumps to itself by name


def test_every_ability_a_spec_may_name_is_offered_with_its_meaning():
    from xitui.core.specs.names import LLM_ABILITIES
    from xitui.wizard.steps import ABILITY_NOTES

    assert list(ABILITY_NOTES) == list(LLM_ABILITIES) and all(ABILITY_NOTES.values())
