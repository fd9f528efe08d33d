"""The errors a user can cause. Front ends turn each into one line (CLI) or a JSON `detail` (server)."""

from __future__ import annotations


class XituiError(Exception):
    """Base of every error whose message is written for the user."""

    #: HTTP status the server answers with for this error.
    status_code = 400


class SpecError(XituiError):
    """A model spec broke one or more rules; `problems` holds one line per broken rule."""

    def __init__(self, problems: list[str]):
        self.problems = [" ".join(p.split("\n")) for p in problems]
        super().__init__("; ".join(self.problems) if problems else "invalid model spec")


class NotFoundError(XituiError):
    """No such model, registration or session."""

    status_code = 404


class ConflictError(XituiError):
    """The name is taken (a registration that exists, a builtin's name)."""

    status_code = 400


class ForbiddenError(XituiError):
    """Understood, and refused: the operation is not allowed on this resource (a builtin model)."""

    status_code = 403


class LaunchError(XituiError):
    """A model could not be launched (missing file, unsupported format, no GPU...)."""

    status_code = 400


class ModelFailedError(XituiError):
    """A running model failed while serving a request (its worker died or raised)."""

    status_code = 500


class ServerUnavailableError(XituiError):
    """No server answered: `refused` when nothing listens at the address (rather than a slow answer)."""

    status_code = 503

    def __init__(self, message: str, *, refused: bool = False):
        super().__init__(message)
        self.refused = refused
