"""What every step of the wizard shares: the options, the asker, the draft, the console, the server."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xitui.core.errors import XituiError
from xitui.core.safe_text import safe
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
    check: bool = False

    @property
    def needs_server(self) -> bool:
        """Without questions, only registering or launching reaches the server."""
        return not self.yes or bool(self.register or self.launch or self.check)


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
        """Reach the server (starting it if need be) in the background, so the name check does not wait and
        the first question does not either."""
        self._prefetch = threading.Thread(target=self._reach, daemon=True, name="wizard-prefetch")
        self._prefetch.start()

    def _reach(self) -> None:
        try:
            self.client().server_kind()
        except XituiError as exc:
            self._client_error = str(exc)

    def is_registered(self, model_type: str, name: str) -> bool | None:
        """Whether the server has `name` registered (None when it cannot be reached: the check is skipped).
        The one name is asked, not the listing: offline, Xinference 4.1's LLM listing never answers."""
        if self._prefetch is None:
            self.prefetch()
        assert self._prefetch is not None
        self._prefetch.join()
        if self._client_error:
            return None
        from xitui.client.transport import ClientError

        try:
            self.client().get_model_registration(model_type, name)
        except ClientError as exc:
            # xitui answers 404; Xinference 400 "Model NAME not found"
            if exc.status_code == 404 or (exc.status_code == 400 and "not found" in str(exc)):
                return False
            self._client_error = str(exc)
            return None
        except XituiError as exc:
            self._client_error = str(exc)
            return None
        return True

    @property
    def server_note(self) -> str | None:
        return self._client_error

    # --- output -------------------------------------------------------------------------------------

    def say(self, text: str, style: str | None = None) -> None:
        """A line for the user; it may quote a server (an error's detail): made safe, never markup."""
        self.console.print(safe(text), style=style, highlight=False, markup=False)
