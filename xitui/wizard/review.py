"""The review step: the spec as highlighted JSON, checked by the validator `register` uses; each problem
sends the user back to the step that owns its field."""

from __future__ import annotations

import json
from typing import Any

from xitui.core.errors import SpecError, XituiError
from xitui.core.specs.advice import spec_advice
from xitui.core.specs.spec import parse_spec
from xitui.wizard.ask import Choice
from xitui.wizard.context import Wizard
from xitui.wizard.machine import Jump, editable, owner


def problems_of(spec: dict[str, Any], model_type: str) -> list[str]:
    try:
        parse_spec(model_type, spec)
    except SpecError as exc:
        return exc.problems
    return []


def facts_line(w: Wizard) -> str:
    found = w.draft.inspection
    if found is None:
        return ""
    facts = found.facts
    parts = []
    if facts.get("architecture"):
        parts.append(f"architecture {facts['architecture']}")
    if facts.get("parameter_count"):
        parts.append(f"{facts['parameter_count'] / 1e6:,.0f}M parameters")
    size = facts.get("file_size") or facts.get("weights_size")
    if size:
        parts.append(f"{size / 2**20:,.0f} MiB of weights")
    if facts.get("file_type"):
        parts.append(f"file type {facts['file_type']}")
    return ", ".join(parts)


def estimate_line(spec: dict[str, Any], model_type: str) -> tuple[str, bool] | None:
    """What launching the spec's first entry would take on this machine, and whether it fits now: the same
    estimate `launch --estimate-only` and the dashboard's launch modal show. None without local files."""
    import os

    from xitui import wire
    from xitui.core.machine import capacity
    from xitui.core.specs.spec import local_path

    first = (spec.get("model_specs") or [{}])[0]
    if not first.get("model_uri"):
        return None
    path = local_path(first["model_uri"])
    fmt = first.get("model_format")
    if model_type in ("embedding", "rerank"):
        engine = "sentence_transformers"
    elif fmt == "ggufv2":
        engine = "llama.cpp"
        template = first.get("model_file_name_template")
        if os.path.isdir(path) and template:
            path = os.path.join(path, template.format(quantization=first.get("quantization")))
    elif fmt == "pytorch":
        engine = "transformers"
    else:
        return None
    settings: wire.Settings = {
        "model_type": model_type, "model_name": spec.get("model_name", ""), "engine": engine, "model_format": fmt,
        "quantization": first.get("quantization"), "model_path": path, "model_id": None, "model_revision": None,
        "file_name": None, "context_length": spec.get("context_length"), "registration": spec,
    }
    try:
        _, fit = capacity.measure(settings)
    except (XituiError, OSError, ValueError):
        return None
    return (fit.line(), fit.fits) if fit else None


def review(w: Wizard) -> Any:
    spec = w.draft.spec()
    model_type = w.draft.model_type or "LLM"
    problems = problems_of(spec, model_type)
    advice = [] if problems else spec_advice(model_type, spec)
    if w.ask.yes:
        if problems:
            raise XituiError("the proposed spec does not validate: " + "; ".join(problems))
        for line in advice:
            w.say(f"warning: {line}", style="yellow")
        return None
    from rich.syntax import Syntax

    w.console.print(Syntax(json.dumps(spec, indent=2, ensure_ascii=False), "json", word_wrap=True,
                           background_color="default"))
    line = facts_line(w)
    if line:
        w.say(f"read from the files: {line}", style="dim")
    memory = estimate_line(spec, model_type) if not problems else None
    if memory is not None:
        text, fits = memory
        w.say(f"at launch on this machine: {text}" + ("" if fits else "; launch --force would try anyway"),
              style="dim" if fits else "yellow")
    if problems:
        for problem in problems:
            w.say(f"problem: {problem}", style="red")
        target = owner(w.steps, problems[0], fallback="source")
        w.say(f"back to the question that owns {problems[0].split(':')[0]}", style="yellow")
        return Jump(target)
    w.say(f"ok: a valid {model_type} spec", style="green")
    for line in advice:
        w.say(f"warning: {line}", style="yellow")
    owned = editable(w.steps, w)
    choices = [Choice("continue", "continue")] + [Choice(f"change the {label}", name) for name, label in owned]
    answer = w.ask.select("Review", choices, "continue")
    return None if answer == "continue" else Jump(answer)

