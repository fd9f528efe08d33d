"""`wizard` (build a spec by questions, from the model's own files) and `inspect` (the proposed spec, as JSON)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from xitui.cli.common import ApiKey, Endpoint, connect
from xitui.terminal import output


def wizard(
    source: Annotated[str | None, typer.Argument(
        help="A .gguf file, a model folder or a Hub id to start from.")] = None,
    from_spec: Annotated[Path | None, typer.Option("--from-spec", help="Edit an existing spec (v1 or v2).")] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Ask nothing: take every proposed answer.")] = False,
    output_file: Annotated[Path | None, typer.Option("--output", "-o", help="Save the spec to this file.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="The model name (instead of the proposed one).")] = None,
    register: Annotated[bool | None, typer.Option(
        "--register/--no-register", help="Register it on the server (with --yes: only when given).")] = None,
    persist: Annotated[bool, typer.Option("--persist", help="Keep the registration across restarts.")] = False,
    launch: Annotated[bool, typer.Option("--launch", help="Launch it once registered.")] = False,
    replace: Annotated[bool, typer.Option(
        "--replace", help="With --yes: replace a registration of that name.")] = False,
    prompt: Annotated[str | None, typer.Option("--prompt", help="The test prompt after launching.")] = None,
    check: Annotated[bool, typer.Option(
        "--check", help="Once registered, try live what the spec promises (xitui check).")] = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Build a model spec step by step from the model's own files; save, register, launch and try it."""
    from xitui.core.errors import XituiError
    from xitui.wizard import Cancelled, Options, run_wizard

    if source and from_spec:
        raise XituiError("give a source or --from-spec, not both")
    if not yes and not sys.stdin.isatty():
        raise XituiError("the wizard asks questions and stdin is not a terminal: add --yes to take every proposed "
                         "answer, or register a spec file with `xitui register --file SPEC`")
    options = Options(source=source, from_spec=from_spec, yes=yes, output=output_file, name=name, register=register,
                      persist=persist, launch=launch, replace=replace, test_prompt=prompt, check=check)
    console = output.console(stderr=yes)
    try:
        run_wizard(options, console, lambda: connect(endpoint, api_key))
    except Cancelled as exc:
        output.info(str(exc))
        raise typer.Exit(130) from None


def inspect(
    source: Annotated[str, typer.Argument(help="A .gguf file, a model folder or a Hub id.")],
    gguf_file: Annotated[str | None, typer.Option("--file", help="Which GGUF file of a folder of several.")] = None,
    facts: Annotated[bool, typer.Option("--facts", help="Also print what was read and where each answer came from.")]
    = False,
) -> None:
    """The spec the wizard would propose for a model's files, as JSON; no questions, no server."""
    from xitui.core.model_files.inspect import inspect_source

    found = inspect_source(source, gguf_file)
    for note in found.notes:
        output.info(f"note: {note}")
    if facts:
        output.print_json({"spec": found.spec(), "facts": found.facts,
                           "origins": {k: p.origin for k, p in found.proposals.items()}})
    else:
        output.print_json(found.spec())
