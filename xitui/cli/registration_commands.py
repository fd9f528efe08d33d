"""`register`, `registrations`, `unregister`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from xitui.cli import completion
from xitui.cli.common import ApiKey, Endpoint, Json, ModelType, connect
from xitui.terminal import output


def register(
    spec_file: Annotated[
        Path | None, typer.Argument(help="The spec (JSON); - reads stdin.", show_default=False)
    ] = None,
    file: Annotated[
        Path | None, typer.Option("--file", "-f", help="The spec, as Xinference's CLI takes it.", show_default=False)
    ] = None,
    model_type: Annotated[
        str | None, typer.Option("--model-type", "-t", help="LLM, embedding or rerank (guessed when left out).")
    ] = None,
    persist: Annotated[bool, typer.Option("--persist", help="Keep it across server restarts.")] = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Register a custom model from its JSON spec (`xitui register spec.json`, or `-f spec.json`)."""
    import json

    from xitui.cli.spec_commands import read_spec_file
    from xitui.core.errors import XituiError
    from xitui.core.specs.spec import guess_model_type

    if (spec_file is None) == (file is None):
        raise XituiError("name the spec once: `xitui register SPEC.json` or `xitui register -f SPEC.json`")
    path = spec_file or file
    assert path is not None  # exactly one of the two (checked above)
    data = read_spec_file(path)
    try:
        name = json.loads(data).get("model_name", "?")
    except (ValueError, AttributeError):
        raise XituiError(f"{path}: not a JSON object") from None
    kind = model_type or guess_model_type(data)
    connect(endpoint, api_key).register_model(kind, data.decode("utf-8", errors="replace"), persist=persist)
    output.info(f"registered {kind} model {name}" + (" (persisted)" if persist else ""))
    from xitui.core.specs.advice import spec_advice

    for line in spec_advice(kind, data):
        output.warning(line)


def registrations(
    model_type: ModelType = "LLM",
    detailed: Annotated[bool, typer.Option("--detailed", help="Full registrations (with --json).")] = False,
    custom_only: Annotated[bool, typer.Option("--custom", help="Only custom registrations.")] = False,
    as_json: Json = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """List registered models, builtin and custom."""
    client = connect(endpoint, api_key)
    items = client.list_model_registrations(model_type, detailed=detailed or not as_json)
    if custom_only:
        items = [i for i in items if not i.get("is_builtin")]
    if as_json:
        output.print_json(items)
        return
    rows = []
    for item in items:
        specs = item.get("model_specs") or []
        formats = sorted({s.get("model_format", "") for s in specs})
        if model_type.lower() == "embedding":
            rows.append([item["model_name"], "builtin" if item.get("is_builtin") else "custom",
                         item.get("dimensions"), item.get("max_tokens"), ",".join(item.get("language") or [])])
        elif model_type.lower() == "rerank":
            rows.append([item["model_name"], "builtin" if item.get("is_builtin") else "custom",
                         item.get("max_tokens") or "-", ",".join(item.get("language") or [])])
        else:
            rows.append([item["model_name"], "builtin" if item.get("is_builtin") else "custom",
                         ",".join(formats), ",".join(item.get("model_ability") or []), item.get("context_length")])
    if model_type.lower() == "embedding":
        output.table(["name", "kind", "dimensions", "max_tokens", "language"], rows, title="embedding models")
    elif model_type.lower() == "rerank":
        output.table(["name", "kind", "max_tokens", "language"], rows, title="rerank models")
    else:
        output.table(["name", "kind", "formats", "abilities", "context"], rows, title="LLM models")


def unregister(
    model_name: Annotated[str, typer.Option("--model-name", "-n", help="The registered name.",
                                                      autocompletion=completion.model_names)],
    model_type: ModelType = "LLM",
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Remove a custom registration (builtins stay)."""
    connect(endpoint, api_key).unregister_model(model_type, model_name)
    output.info(f"unregistered {model_type} model {model_name}")
