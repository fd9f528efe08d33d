"""Shell completion of model names and uids (`xitui --install-completion` sets it up for the shell).

A completion runs on every Tab, so it asks at most one question with a short timeout and never starts a
server: registered names from the server that answers (else the builtins and the registrations persisted in
XITUI_HOME), running uids from the server (nothing when none answers).
"""

from __future__ import annotations

from typing import Any

import typer

from xitui.core.specs.names import MODEL_TYPES

#: Seconds a completion waits for the server.
TIMEOUT = 0.5


class _Server:
    """The endpoint the command would use (its -e/--api-key, else the config), asked at most once per path."""

    def __init__(self, ctx: typer.Context | None):
        from xitui.client.autostart import check_listener
        from xitui.core.config import load_config
        from xitui.core.errors import XituiError

        config = load_config()
        params = ctx.params if ctx is not None else {}
        self.url = (params.get("endpoint") or config.endpoint).rstrip("/")
        key = params.get("api_key") or config.api_key
        self.headers = {"Authorization": f"Bearer {key}"} if key else {}
        try:
            check_listener(self.url)  # nothing, not even a key, goes to another user's port
            self.usable = True
        except XituiError:
            self.usable = False

    def get(self, path: str) -> Any:
        """One GET; None when nothing answers in time (or not with 200 and JSON)."""
        import httpx

        if not self.usable:
            return None
        try:
            answer = httpx.get(self.url + path, headers=self.headers, timeout=TIMEOUT, trust_env=False)
            return answer.json() if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            return None


def model_uids(ctx: typer.Context, incomplete: str) -> list[str]:
    """The uids of the running models."""
    found = _Server(ctx).get("/v1/models")
    if isinstance(found, dict) and isinstance(found.get("data"), list):  # xitui's and OpenAI's shape
        uids = [str(m.get("id")) for m in found["data"] if isinstance(m, dict)]
    elif isinstance(found, dict):  # Xinference's: uid -> description
        uids = [str(uid) for uid in found]
    else:
        uids = []
    return sorted(uid for uid in uids if uid.startswith(incomplete) and _typable(uid))


def model_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Registered model names, of every type (the command's --model-type when given)."""
    kind = ctx.params.get("model_type") if ctx is not None else None
    kinds = [kind] if kind in MODEL_TYPES else list(MODEL_TYPES)
    server = _Server(ctx)
    names: list[str] = []
    for each in kinds:
        found = server.get(f"/v1/model_registrations/{each}")
        if found is None:
            names += _local_names(each)
        else:
            names += [str(r.get("model_name")) for r in found if isinstance(r, dict)]
    return sorted({name for name in names if name.startswith(incomplete) and _typable(name)})


def _typable(name: str) -> bool:
    """A name the shell may list: one that holds nothing a terminal acts on (such a name cannot be typed
    anyway, and the shell would print it raw)."""
    from xitui.core.safe_text import safe_line

    return safe_line(name) == name


def _local_names(kind: str) -> list[str]:
    from xitui.core.config import home_dir
    from xitui.core.specs.registry import Registry

    try:
        return [r["model_name"] for r in Registry(home_dir()).list(kind)]
    except Exception:  # a completion never fails the shell
        return []
