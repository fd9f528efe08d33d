"""Work whose cost grows with what a request sends, run beside the event loop instead of on it.

Large bodies are parsed, schemas checked and tools prepared on these threads: the event loop keeps answering
every other route and stream meanwhile. Two threads: the work holds Python's lock most of the time, so more
would not finish it sooner, and the default pool stays free for the server's own work (registry, metrics).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

_P = ParamSpec("_P")
_T = TypeVar("_T")

_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="request-prep")


async def off_loop(work: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """`work(*args, **kwargs)` on a request-preparation thread; its result or its exception."""
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_POOL, lambda: work(*args, **kwargs))
