"""Launch a model and wait until it is ready, reporting progress: what `xitui launch`, the wizard and the
dashboard share. Ctrl-C (KeyboardInterrupt) while waiting terminates the launching model."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from xitui.core.errors import XituiError

if TYPE_CHECKING:
    from xitui.client.client import Client

#: progress(fraction 0..1, stage in words)
OnProgress = Callable[[float, str], None]


def launch_and_wait(client: Client, on_progress: OnProgress | None = None, poll: float = 0.03,
                    **launch: Any) -> str:
    """Launch (keyword arguments as `Client.launch_model`), then wait for `ready`; returns the uid.

    A launch that fails terminates what it started and raises XituiError with the server's reason."""
    uid = client.launch_model(wait_ready=False, **launch)
    try:
        while True:
            state = client.launch_status(uid)
            if on_progress is not None:
                on_progress(float(state.get("progress") or 0.0), str(state.get("stage") or ""))
            if state.get("state") == "ready":
                return uid
            if state.get("state") == "error":
                with contextlib.suppress(XituiError):
                    client.terminate_model(uid)
                raise XituiError(f"could not launch {launch.get('model_name')}: {state.get('error')}")
            time.sleep(poll)
    except KeyboardInterrupt:
        with contextlib.suppress(XituiError):
            client.terminate_model(uid)
        raise
