"""Shell completion of model names and uids (`xitui --install-completion` sets it up for the shell).

A completion runs on every Tab, so it asks at most one question with a short timeout and never starts a
server: registered names from the server that answers (else the builtins and the registrations persisted in
XITUI_HOME), running uids from the server (nothing when none answers).
"""

from __future__ import annotations

from typing import Any

import typer

#: Seconds a completion waits for the server.
TIMEOUT = 0.5


def _endpoint(ctx: typer.Context) -> tuple[str, str | None]:
    from xitui.core.config import load_config

    config = load_config()
    params = ctx.params if ctx is not None else {}
    return params.get("endpoint") or config.endpoint, params.get("api_key") or config.api_key


def _ask(ctx: typer.Context, path: str) -> Any:
    """One GET to the endpoint the command would use; None when nothing (of this user) answers in time."""
    import httpx

    from xitui.client.autostart import check_listener
    from xitui.core.errors import XituiError

    url, key = _endpoint(ctx)
    try:
        check_listener(url)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        answer = httpx.get(url.rstrip("/") + path, headers=headers, timeout=TIMEOUT, trust_env=False)
        return answer.json() if answer.status_code == 200 else None
    except (httpx.HTTPError, ValueError, XituiError):
        return None


def model_uids(ctx: typer.Context, incomplete: str) -> list[str]:
    """The uids of the running models."""
    found = _ask(ctx, "/v1/models")
    if isinstance(found, dict) and isinstance(found.get("data"), list):  # xitui's and OpenAI's shape
        uids = [str(m.get("id")) for m in found["data"] if isinstance(m, dict)]
    elif isinstance(found, dict):  # Xinference's: uid -> description
        uids = [str(uid) for uid in found]
    else:
        uids = []
    return sorted(uid for uid in uids if uid.startswith(incomplete))


def model_names(ctx: typer.Context, incomplete: str) -> list[str]:
    """Registered model names, LLM and embedding (the command's --model-type when given)."""
    kind = (ctx.params.get("model_type") if ctx is not None else None) or None
    kinds = [kind] if kind in ("LLM", "embedding") else ["LLM", "embedding"]
    names: list[str] = []
    for each in kinds:
        found = _ask(ctx, f"/v1/model_registrations/{each}")
        if found is None:
            names += _local_names(each)
        else:
            names += [str(r.get("model_name")) for r in found if isinstance(r, dict)]
    return sorted({name for name in names if name.startswith(incomplete)})


def _local_names(kind: str) -> list[str]:
    from xitui.core.config import home_dir
    from xitui.core.registry import Registry

    try:
        return [r["model_name"] for r in Registry(home_dir()).list(kind)]
    except Exception:  # a completion never fails the shell
        return []
