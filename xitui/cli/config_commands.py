"""`xitui config show|set`."""

from __future__ import annotations

from typing import Annotated

import typer

from xitui.terminal import output

config_app = typer.Typer(help="Show or change settings (config.toml).", no_args_is_help=True)


@config_app.command("show")
def show(json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show every setting, where it comes from, and the paths xitui uses."""
    from xitui.core.config import config_path, home_dir, load_config

    cfg = load_config()
    values = cfg.flat()
    if values.get("api_key"):
        values["api_key"] = "****"
    if json_out:
        output.print_json({"settings": values, "config_file": str(config_path()), "home": str(home_dir())})
        return
    rows = [[k, _shown(v), cfg.sources.get(k, "default")] for k, v in values.items()]
    rows += [["(config file)", config_path(), ""], ["(home)", home_dir(), ""]]
    output.table(["setting", "value", "from"], rows)


@config_app.command("set")
def set_(
    key: Annotated[str, typer.Argument(help="endpoint, api_key, theme, generation.max_tokens, ...")],
    value: Annotated[str, typer.Argument()],
) -> None:
    """Change one setting in config.toml."""
    from xitui.core.config import config_path, set_value

    typed = set_value(key, value)
    output.info(f"{key} = {typed!r} (in {config_path()})")


def _shown(value: object) -> object:
    if value is None:
        return ""
    return ", ".join(value) if isinstance(value, list) else value
