"""Models launched for a block of a test, and always terminated and unregistered after it."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from xitui.client import Client


@contextlib.contextmanager
def launched(client: Client, model_name: str, spec: str | None = None, *, model_type: str = "LLM",
             **launch: Any) -> Iterator[str]:
    """Register `spec` (when given), launch `model_name` with `launch`'s settings and give its uid; after the
    block, whatever happened in it or in the launch, the model is terminated and the spec unregistered.

    When the launch or the block failed, a failure to clean up is not raised over that first error."""
    uid = launch.get("model_uid") or model_name
    if spec is not None:
        client.register_model(model_type, spec)
    quiet = True
    try:
        uid = client.launch_model(model_name=model_name, model_type=model_type, **launch)
        yield uid
        quiet = False
    finally:
        with contextlib.ExitStack() as cleanup:
            if quiet:
                cleanup.enter_context(contextlib.suppress(Exception))
            try:
                client.terminate_model(uid)
            finally:
                if spec is not None:
                    client.unregister_model(model_type, model_name)
