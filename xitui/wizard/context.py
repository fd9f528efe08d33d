"""What every step of the wizard shares: the options, the asker, the draft, the console, the server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xitui.core.errors import XituiError
from xitui.core.safe_text import safe
from xitui.core.specs.names import MODEL_TYPES
from xitui.wizard.ask import Asker
from xitui.wizard.draft import Draft

if TYPE_CHECKING:
    from xitui.client import Client
    from xitui.wizard.machine import Step


@dataclass
class Options:
    """What the command line said."""

    source: str | None = None
    from_spec: Path | None = None
    yes: bool = False
    output: Path | None = None
    name: str | None = None
    register: bool | None = None
    persist: bool = False
    launch: bool = False
    replace: bool = False
    test_prompt: str | None = None

    @property
    def needs_server(self) -> bool:
        """Without questions, only registering or launching reaches the server."""
        return not self.yes or bool(self.register or self.launch)


class Wizard:
    """The shared state of one wizard run."""

    def __init__(self, options: Options, console: Any, connect: Callable[[], Client], asker: Asker | None = None):
        self.options = options
        self.console = console
        self.ask = asker or Asker(yes=options.yes)
        self.draft = Draft()
        self._connect = connect
        self._client: Client | None = None
        self._client_error: str | None = None
        self._names: dict[str, set[str]] = {}
        self._prefetch: threading.Thread | None = None
        #: Undo actions of what the finish step did, run in reverse when the wizard is cancelled.
        self.journal: list[Callable[[], None]] = []
        self.committed = False
        self.launched_uid: str | None = None
        #: The steps being run (wizard/steps.py): the review sends problems and changes to them.
        self.steps: list[Step] = []

    # --- the server, reached lazily ---------------------------------------------------------------

    def client(self) -> Client:
        if self._client is None:
            self._client = self._connect()
        return self._client

    def prefetch(self) -> None:
        """Start the server (if need be) and read its registrations in the background, so the name check
        does not wait and the first question does not either."""
        self._prefetch = threading.Thread(target=self._fetch_names, daemon=True, name="wizard-prefetch")
        self._prefetch.start()

    def _fetch_names(self) -> None:
        try:
            client = self.client()
            for kind in MODEL_TYPES:
                self._names[kind] = {r["model_name"] for r in client.list_model_registrations(kind)}
        except XituiError as exc:
            self._client_error = str(exc)

    def registered_names(self, model_type: str) -> set[str] | None:
        """Names registered on the server (None when it cannot be reached: the check is skipped)."""
        if self._prefetch is None:
            self.prefetch()
        assert self._prefetch is not None
        self._prefetch.join()
        if self._client_error:
            return None
        return self._names.get(model_type, set())

    @property
    def server_note(self) -> str | None:
        return self._client_error

    # --- output -------------------------------------------------------------------------------------

    def say(self, text: str, style: str | None = None) -> None:
        """A line for the user; it may quote a server (an error's detail): made safe, never markup."""
        self.console.print(safe(text), style=style, highlight=False, markup=False)
