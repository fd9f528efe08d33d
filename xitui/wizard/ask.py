"""The wizard's questions: questionary prompts that show a proposed answer and where it came from.

Every question works the same way: the proposal is shown in grey and Enter takes it; → (or Tab) puts it
on the line to edit; `<` on an empty line goes back a step; Ctrl-C cancels the wizard. With `--yes`
nothing is asked: each question returns its proposal, and one without a proposal is an error naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from xitui.core.errors import XituiError


class Back(Exception):
    """The user left a question with `<`: raised by the question, caught by the step machine (which goes
    back a step) or by a step that asks something again."""


#: What a question's application returns when `<` left it.
_LEFT = object()

HINT = "Enter takes the proposal (grey), → edits it, < goes back, Ctrl-C cancels."


class NoProposal(XituiError):
    """`--yes` met a question that has no proposed answer."""


@dataclass
class Choice:
    """One option of a select or checkbox question."""

    title: str
    value: Any
    #: Shown dimmed after the title (a style's description, a file's size...).
    note: str = ""


@cache
def _style() -> Any:
    from questionary import Style

    return Style([("origin", "fg:ansibrightblack italic"), ("placeholder", "fg:ansibrightblack"),
                  ("qmark", "fg:ansicyan bold"), ("answer", "fg:ansigreen bold"),
                  ("instruction", "fg:ansibrightblack")])


class Asker:
    """Asks (or, with `yes`, answers from the proposals) one question at a time."""

    def __init__(self, yes: bool = False):
        self.yes = yes

    # --- text-like questions -------------------------------------------------------------------

    def text(self, message: str, proposal: str | None, *, origin: str | None = None, field: str = "",
             validate: Callable[[str], str | None] | None = None, required: bool = True,
             completer: Any = None, multiline: bool = False) -> str:
        """A line of text; Enter on an empty line takes the proposal. `validate` returns a problem or None."""
        if self.yes:
            if proposal is None and required:
                raise NoProposal(f"--yes: no proposed answer for {field or message!r}; answer it without --yes")
            problem = validate(proposal) if validate and proposal is not None else None
            if problem:
                raise NoProposal(f"--yes: the proposed {field or message!r} does not do: {problem}")
            return proposal or ""
        import questionary
        from prompt_toolkit.filters import Condition
        from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings

        def check(text: str) -> bool | str:
            value = text or (proposal or "")
            if not value and required:
                return "an answer is needed here"
            if validate and value:
                problem = validate(value)
                if problem:
                    return problem
            return True

        kwargs: dict[str, Any] = {}
        if completer is not None:
            kwargs["completer"] = completer
            kwargs["complete_while_typing"] = True
        if proposal:
            kwargs["placeholder"] = [("class:placeholder", proposal.splitlines()[0][:200])]
        question = questionary.text(_message(message, origin), validate=check, style=_style(), multiline=multiline,
                                    **kwargs)
        app = question.application
        empty = Condition(lambda: app.current_buffer.text == "")
        keys = KeyBindings()

        @keys.add("<", filter=empty, eager=True)
        def _back(event: Any) -> None:
            event.app.exit(result=_LEFT)

        if proposal:
            @keys.add("right", filter=empty, eager=True)
            @keys.add("tab", filter=empty & Condition(lambda: completer is None), eager=True)
            def _fill(event: Any) -> None:
                event.current_buffer.insert_text(proposal)

        app.key_bindings = merge_key_bindings([kb for kb in (app.key_bindings, keys) if kb is not None])
        answer = question.unsafe_ask()
        if answer is _LEFT:
            raise Back
        if not required and answer.strip() == "-":
            return ""
        return answer or (proposal or "")

    def number(self, message: str, proposal: int | None, *, origin: str | None = None, field: str = "",
               minimum: int = 1, maximum: int = 10_000_000) -> int:
        def check(text: str) -> str | None:
            if not text.strip().isdigit():
                return "a whole number, please"
            if not minimum <= int(text) <= maximum:
                return f"between {minimum} and {maximum}"
            return None

        answer = self.text(message, None if proposal is None else str(proposal), origin=origin, field=field,
                           validate=check)
        return int(answer)

    # --- choices --------------------------------------------------------------------------------

    def select(self, message: str, choices: Sequence[Choice], proposal: Any, *, origin: str | None = None,
               field: str = "") -> Any:
        """One of `choices`; the proposal is pointed at first."""
        if self.yes:
            if proposal is None:
                raise NoProposal(f"--yes: no proposed answer for {field or message!r}; answer it without --yes")
            return proposal
        import questionary

        items = [questionary.Choice(title=_title(c), value=c.value) for c in choices]
        default = next((i for i in items if i.value == proposal), None)
        question = questionary.select(_message(message, origin), choices=items, default=default, style=_style(),
                                      instruction="(↑↓, Enter; < back)")
        return _ask_with_back(question)

    def checkbox(self, message: str, choices: Sequence[Choice], proposal: Sequence[Any], *,
                 origin: str | None = None, field: str = "", at_least_one: bool = True) -> list[Any]:
        """Any of `choices`; the proposal comes checked."""
        if self.yes:
            if at_least_one and not proposal:
                raise NoProposal(f"--yes: no proposed answer for {field or message!r}; answer it without --yes")
            return list(proposal)
        import questionary

        items = [questionary.Choice(title=_title(c), value=c.value, checked=c.value in proposal) for c in choices]
        question = questionary.checkbox(
            _message(message, origin), choices=items, style=_style(),
            instruction="(Space toggles, Enter accepts; < back)",
            validate=(lambda chosen: True if chosen or not at_least_one else "choose at least one"),
        )
        return _ask_with_back(question)

    def yes_no(self, message: str, proposal: bool, *, origin: str | None = None) -> bool:
        return self.select(message, [Choice("yes", True), Choice("no", False)], proposal, origin=origin)


def _title(choice: Choice) -> Any:
    if not choice.note:
        return choice.title
    return [("", choice.title), ("class:origin", f"  {choice.note}")]


def _message(message: str, origin: str | None) -> str:
    if not origin:
        return message
    return f"{message} ({origin})" if origin == "default" else f"{message} (from {origin})"


def _ask_with_back(question: Any) -> Any:
    from prompt_toolkit.key_binding import KeyBindings, merge_key_bindings

    keys = KeyBindings()

    @keys.add("<", eager=True)
    def _back(event: Any) -> None:
        event.app.exit(result=_LEFT)

    app = question.application
    app.key_bindings = merge_key_bindings([app.key_bindings, keys])
    answer = question.unsafe_ask()
    if answer is _LEFT:
        raise Back
    return answer
