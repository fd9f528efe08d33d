"""The registration wizard: questions that build a spec step by step from the model's own files, a preview
of what the model will see, and a finish that saves, registers, launches and tries it.

It reaches the server only through `xitui.client`, and imports no torch, llama_cpp, textual or fastapi.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xitui.core.errors import XituiError
from xitui.wizard.ask import HINT, Asker
from xitui.wizard.context import Options, Wizard

if TYPE_CHECKING:
    from xitui.client import Client

CANCELLED = "cancelled: nothing saved or registered"

__all__ = ["CANCELLED", "Options", "Wizard", "run_wizard", "Cancelled"]


class Cancelled(Exception):
    """Ctrl-C: everything the wizard did was undone."""


def run_wizard(options: Options, console: Any, connect: Callable[[], Client], asker: Asker | None = None) -> Wizard:
    """Run the wizard to its end. Raises Cancelled after undoing everything on Ctrl-C, XituiError (after
    undoing) when something fails."""
    from xitui.wizard.finish import undo
    from xitui.wizard.machine import run_steps
    from xitui.wizard.steps import inspect_into, steps

    w = Wizard(options, console, connect, asker)
    try:
        if options.from_spec is not None:
            _load_spec_file(w)
        elif options.source:
            inspect_into(w, options.source)
        if not options.yes:
            w.say(HINT, style="dim")
            if options.needs_server:
                w.prefetch()
        w.steps = steps()
        run_steps(w.steps, w)
    except (KeyboardInterrupt, EOFError):  # Ctrl-C, or Ctrl-D at a question
        if not w.committed:
            undo(w)
            raise Cancelled(CANCELLED) from None
    except BaseException:
        if not w.committed:
            undo(w)
        raise
    return w


def _load_spec_file(w: Wizard) -> None:
    from xitui.core.specs.spec import guess_model_type, parse_spec

    path = w.options.from_spec
    assert path is not None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise XituiError(f"{path}: cannot read ({exc.strerror})") from None
    model_type = guess_model_type(data)
    spec = parse_spec(model_type, data)
    registration = spec.registration()
    w.draft.load_spec(registration, model_type, path.name)
    uri = (registration.get("model_specs") or [{}])[0].get("model_uri")
    w.draft.source = uri
    if w.options.name:
        w.draft.values["model_name"] = w.options.name
    w.say(f"editing {path.name} ({model_type}); it will be saved in the version 2 form", style="dim")
