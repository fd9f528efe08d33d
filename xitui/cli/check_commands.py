"""`xitui check NAME`: each thing a registration promises, tried live (xitui/client/check.py)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from xitui.cli import completion
from xitui.cli.common import ApiKey, Endpoint, Json, ModelType, connect
from xitui.core.errors import XituiError
from xitui.terminal import output


def check(
    model_name: Annotated[str, typer.Argument(help="A registered model name.", show_default=False,
                                              autocompletion=completion.model_names)],
    model_type: ModelType = "LLM",
    as_json: Json = False,
    fix: Annotated[bool, typer.Option("--fix", help="Propose the corrected spec and register it after a yes.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="With --fix: register the corrected spec unasked.")] = False,
    only: Annotated[list[str] | None, typer.Option(
        "--only", help="Only this row (again for more): 'tools', 'chat format', 'context length'...",
        show_default=False)] = None,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Try what a registered model's spec promises (chat format, tools, reasoning, JSON schemas, context length;
    dimensions and similarity; ranking) on the running model, launching it for the check if need be: one row
    each, with the likely cause and the fix where it fails. Exit code 1 when a row fails."""
    from xitui.client.check import check as run_check
    from xitui.client.check import fixed_spec, register_fixed

    client = connect(endpoint, api_key)
    report = run_check(client, model_name, model_type, said=lambda what: None if as_json else output.info(what),
                       only=only or ())
    if as_json:
        output.print_json({**report.as_dict(), "fixes": report.fixes})
    else:
        marks = {"ok": "ok", "warn": "warn", "fail": "FAIL", "skip": "skip"}
        output.table(["check", "result", "figure", "likely cause", "fix"],
                     [[r.name, marks[r.status], r.figure, r.cause or "-", r.fix_text] for r in report.rows],
                     title=f"{model_name}: {report.summary}")
    if fix and report.fixes:
        registration = client.get_model_registration(model_type, model_name)
        if registration.get("is_builtin"):
            raise XituiError(f"{model_name} is builtin: register a copy under another name to change it")
        output.info("the corrected spec:")
        print(json.dumps(fixed_spec(registration, report.fixes), indent=2))
        if not yes and not typer.confirm("Register it in place of the current one?", default=False, err=True):
            output.info("left as it was")
        else:
            register_fixed(client, model_type, model_name, report.fixes)
            persisted = bool(registration.get("persisted", True))
            output.info(f"registered the corrected {model_name}" + (" (persisted)" if persisted else ""))
    elif fix:
        output.info("nothing to fix")
    if not report.passed:
        raise typer.Exit(1)
