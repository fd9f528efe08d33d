"""The chat format step: the model's own template, a builtin prompt style or a Jinja file, then a preview of
a sample conversation rendered by the code the server uses, special tokens shown."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from xitui.core.chat_format.prompts import (
    SAMPLE_CONVERSATION,
    PromptStyle,
    builtin_styles,
    conversation_prompt,
    get_style,
)
from xitui.core.errors import XituiError
from xitui.core.specs import catalog
from xitui.wizard.ask import Back, Choice
from xitui.wizard.context import Wizard

#: Special tokens as templates write them: <start_of_turn>, <|im_start|>, [INST], <<SYS>>, </s>.
SPECIAL = re.compile(r"<\|[^|<>\s]{1,40}\|>|</?[A-Za-z_][\w.:-]{0,40}>|\[/?INST\]|<<\/?SYS>>|\[/?[A-Z_]{3,20}\]")


def _style_notes() -> dict[str, str]:
    """One line per builtin style: its roles and a family that uses it."""
    users: dict[str, str] = {}
    for name, raw in catalog.raw_llms().items():
        style = raw.get("prompt_style")
        if isinstance(style, str):
            users.setdefault(style.upper(), name)
    notes = {}
    for key, style in builtin_styles().items():
        roles = " / ".join(style.roles)
        family = users.get(key)
        notes[style.style_name] = f"{roles}" + (f"; used by {family}" if family else "")
    return notes


def _current(w: Wizard) -> tuple[str, str | None]:
    """(kind, detail) of the chat format the draft has now: keep / own / style NAME / file / none."""
    if w.draft.format_from_spec:
        return "keep", None
    template = w.draft.get("chat_template")
    if template and template == w.draft.own_template:
        return "own", None
    if template:
        return "file", None
    style = w.draft.get("prompt_style")
    if isinstance(style, dict):
        return "style", style.get("style_name")
    if isinstance(style, str):
        known = get_style(style)
        return "style", known.style_name if known else style
    family = w.draft.get("model_family")
    family_style = catalog.family_prompt_style(family) if family and family != "other" else None
    if family_style:
        return "style", family_style.upper()
    return ("own", None) if w.draft.own_template else ("none", None)


def ask_chat_format(w: Wizard) -> Any:
    while True:
        kind, detail = _current(w)
        choices = []
        if w.draft.format_from_spec:
            what = "its chat_template" if w.draft.get("chat_template") else "its prompt_style, as written"
            choices.append(Choice("keep the spec's chat format", "keep", what))
        if w.draft.own_template:
            origin = w.draft.inspection.origin("chat_template") if w.draft.inspection else None
            choices.append(Choice("the model's own chat template", "own", f"from {origin}" if origin else ""))
        choices.append(Choice("a builtin prompt style", "style", "see `xitui styles`"))
        choices.append(Choice("a Jinja chat template from a file", "file"))
        proposal = kind if kind != "none" else None
        origin = None
        if kind == "keep":
            origin = w.draft.origin("model_name") if w.options.from_spec else None
        elif kind == "own":
            origin = w.draft.inspection.origin("chat_template") if w.draft.inspection else None
        elif kind == "style":
            origin = w.draft.origin("prompt_style") or f"family {w.draft.get('model_family')}"
        answer = w.ask.select("Chat format", choices, proposal, origin=origin, field="chat format")
        try:
            _choose(w, answer, detail if kind == "style" else None)
        except Back:
            continue  # back from the style or file question: the chat format is asked again
        if answer != "keep":
            w.draft.format_from_spec = False
        try:
            preview(w)
        except Back:
            continue
        return None


def _choose(w: Wizard, kind: str, style_proposal: str | None) -> None:
    if kind == "keep":
        return None
    if kind == "own":
        w.draft.set("chat_template", w.draft.own_template)
        w.draft.set("prompt_style", None)
        return None
    if kind == "style":
        notes = _style_notes()
        choices = [Choice(name, name, note) for name, note in notes.items()]
        family = w.draft.get("model_family")
        proposal = style_proposal or (catalog.family_prompt_style(family) or "").upper() or None
        answer = w.ask.select("Prompt style", choices, proposal, origin=f"family {family}" if proposal else None,
                              field="prompt_style")
        w.draft.set("prompt_style", answer)
        w.draft.set("chat_template", None)
        _add_style_stops(w, answer)
        return None
    from prompt_toolkit.completion import PathCompleter

    def check(text: str) -> str | None:
        try:
            _read_template(text)
        except XituiError as exc:
            return str(exc)
        return None

    answer = w.ask.text("Jinja chat template file", None, field="chat_template file", validate=check,
                        completer=PathCompleter(expanduser=True))
    w.draft.set("chat_template", _read_template(answer))
    w.draft.set("prompt_style", None)
    return None


def _read_template(path_text: str) -> str:
    from xitui.core.chat_format.prompts import compile_chat_template

    path = Path(path_text).expanduser()
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise XituiError(f"{path}: cannot read ({getattr(exc, 'strerror', None) or exc})") from None
    if path.suffix == ".json" or text.lstrip().startswith("{"):  # a tokenizer_config.json: its template
        import json

        try:
            text = json.loads(text).get("chat_template") or ""
        except (ValueError, AttributeError):
            raise XituiError(f"{path}: not a Jinja template, nor JSON with a chat_template") from None
    if not text.strip():
        raise XituiError(f"{path}: holds no template")
    compile_chat_template(text)
    return text


def _add_style_stops(w: Wizard, name: str) -> None:
    stop, ids = catalog.with_style_stops(w.draft.get("stop"), w.draft.get("stop_token_ids"), name)
    for key, merged in (("stop", stop), ("stop_token_ids", ids)):
        if merged:
            w.draft.values[key] = merged


def rendered_sample(w: Wizard) -> str:
    """The sample conversation as the model will see it (the server's own rendering code)."""
    style = w.draft.get("prompt_style")
    if isinstance(style, str):
        style = get_style(style)
    elif isinstance(style, dict):  # a spec's full prompt_style object
        style = PromptStyle(**style)
    family = SimpleNamespace(chat_template=w.draft.get("chat_template"), prompt_style=style, family_style=None,
                             model_name=w.draft.get("model_name"))
    facts = w.draft.inspection.facts if w.draft.inspection else {}
    return conversation_prompt(family, None, SAMPLE_CONVERSATION, facts.get("bos_token") or "",
                               facts.get("eos_token") or "")


def show_prompt(w: Wizard, text: str) -> None:
    """The prompt with special tokens highlighted and line ends shown."""
    from rich.panel import Panel
    from rich.text import Text

    shown = Text()
    lines = text.split("\n")
    for number, line in enumerate(lines):
        last = 0
        for match in SPECIAL.finditer(line):
            shown.append(line[last:match.start()])
            shown.append(match.group(0), style="bold magenta")
            last = match.end()
        shown.append(line[last:])
        if number < len(lines) - 1:
            shown.append("↵\n", style="dim")
    shown.append("▌ the model writes here", style="dim green")
    w.console.print(Panel(shown, title="preview: a sample conversation as the model sees it",
                          subtitle="special tokens in colour, ↵ = newline"))


def preview(w: Wizard) -> None:
    """Show the sample conversation as the model will see it; Back when the user wants another format."""
    try:
        text = rendered_sample(w)
    except XituiError as exc:
        w.say(f"this chat format fails on the sample conversation: {exc}", style="red")
        if w.ask.yes:
            raise
        raise Back from None
    if w.ask.yes:
        return
    show_prompt(w, text)
    answer = w.ask.select("Use this chat format?", [Choice("yes, use it", True), Choice("no, choose again", False)],
                          True)
    if answer is False:
        raise Back
