"""The `xitui` application: one Typer app, commands registered from small modules."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from xitui import __version__
from xitui.cli import (
    agent_commands,
    cache_commands,
    chats_commands,
    check_commands,
    config_commands,
    dashboard_commands,
    doctor_commands,
    generation_commands,
    model_commands,
    registration_commands,
    server_commands,
    spec_commands,
    wizard_commands,
)

app = typer.Typer(
    name="xitui",
    help="Register, launch and talk to custom local models (Xinference-compatible).",
    no_args_is_help=False,
    invoke_without_command=True,
    pretty_exceptions_enable=False,
    add_completion=True,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        print(f"xitui {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Register, launch and talk to custom local models (Xinference-compatible)."""
    if ctx.invoked_subcommand is None:
        # `xitui` alone: the dashboard on a terminal, the help otherwise
        if sys.stdin.isatty() and sys.stdout.isatty():
            dashboard_commands.dashboard()
        else:
            print(ctx.get_help())


app.command()(spec_commands.validate)
app.command()(spec_commands.styles)
app.command()(dashboard_commands.dashboard)
app.command()(wizard_commands.wizard)
app.command()(wizard_commands.inspect)
app.command()(registration_commands.register)
app.command()(registration_commands.registrations)
app.command()(registration_commands.unregister)
app.command()(model_commands.launch)
app.command("list")(model_commands.list_models)
app.command()(model_commands.terminate)
app.command()(model_commands.logs)
app.command()(check_commands.check)
app.command()(cache_commands.pull)
app.command()(generation_commands.generate)
app.command()(generation_commands.chat)
app.command()(generation_commands.embed)
app.command()(generation_commands.rerank)
app.command()(agent_commands.agent)
app.command()(server_commands.serve)
app.command()(server_commands.stop)
app.command()(doctor_commands.doctor)
app.add_typer(config_commands.config_app, name="config")
app.add_typer(chats_commands.chats_app, name="chats")
app.add_typer(cache_commands.cache_app, name="cache")


def main(args: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit code 1, never a traceback. `args` (default:
    the command line) lets the tests run the whole program in-process."""
    from xitui.core.errors import XituiError

    try:
        app(args=args, prog_name="xitui")
    except XituiError as exc:
        from xitui.terminal.output import error

        error(str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
