"""Offline commands about specs and prompt styles: `validate`, `styles`."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from xitui.terminal import output


def read_spec_file(file: Path) -> bytes:
    """Read a spec file (`-` for stdin) or fail with one line."""
    from xitui.core.errors import XituiError

    if str(file) == "-":
        return sys.stdin.buffer.read()
    try:
        return file.read_bytes()
    except OSError as exc:
        raise XituiError(f"cannot read {file}: {exc.strerror}") from None


def validate(
    file: Annotated[Path, typer.Argument(help="The spec (JSON); - reads stdin.")],
    model_type: Annotated[
        str | None, typer.Option("--model-type", "-t", help="LLM, embedding or rerank (guessed when left out).")
    ] = None,
) -> None:
    """Check a model spec offline and print its normalised (version 2) form."""
    from xitui.core.errors import SpecError
    from xitui.core.specs.spec import guess_model_type, parse_spec

    data = read_spec_file(file)
    try:
        kind = model_type or guess_model_type(data)
        spec = parse_spec(kind, data)
    except SpecError as exc:
        for problem in exc.problems:
            output.error(problem)
        raise typer.Exit(1) from None
    registration = spec.registration()
    registration.pop("is_builtin", None)
    output.print_json(registration)
    from xitui.core.specs.advice import spec_advice

    for line in spec_advice(kind, data):
        output.warning(line)
    formats = {s.get("model_format") for s in registration["model_specs"]}
    if "ggmlv3" in formats:
        output.info("note: llama.cpp reads GGUF only since 2023: a ggmlv3 file is converted to GGUF at its first "
                    "launch, once (kept under XITUI_HOME/converted)")
    output.info(f"ok: {registration['model_name']} is a valid {kind} spec")


def styles(
    name: Annotated[str | None, typer.Argument(help="A style to show in full.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List the builtin prompt styles, or show one with a sample conversation rendered."""
    from xitui.core.chat_format.prompts import SAMPLE_CONVERSATION, builtin_styles, get_style, render_prompt
    from xitui.core.errors import NotFoundError

    if name is None:
        all_styles = list(builtin_styles().values())
        if json_out:
            output.print_json([s.model_dump() for s in all_styles])
            return
        rows = [[s.style_name, " / ".join(s.roles), ", ".join(s.stop or [])] for s in all_styles]
        output.table(["style", "roles", "stop"], rows, title="Builtin prompt styles")
        return
    style = get_style(name)
    if style is None:
        from xitui.core.specs import catalog
        family_style = catalog.family_prompt_style(name)
        style = get_style(family_style) if family_style else None
    if style is None:
        raise NotFoundError(f"no builtin prompt style or family named {name!r} (see `xitui styles`)")
    rendered = render_prompt(style, SAMPLE_CONVERSATION)
    if json_out:
        output.print_json({**style.model_dump(), "sample": rendered})
        return
    if output.plain():
        for key, value in style.model_dump().items():
            print(f"{key}: {value!r}")
        print("--- sample conversation rendered ---")
        print(rendered)
        return
    from rich.panel import Panel
    from rich.table import Table
    from rich.text import Text

    fields = Table.grid(padding=(0, 2))
    for key, value in style.model_dump().items():
        fields.add_row(Text(key, style="bold"), Text(repr(value)))
    con = output.console()
    con.print(Panel(fields, title=f"prompt style {style.style_name}"))
    con.print(
        Panel(Text(rendered), title="sample conversation, rendered", subtitle="ends where the model writes")
    )
