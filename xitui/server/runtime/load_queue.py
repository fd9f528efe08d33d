"""Loads on request take turns: requests naming eight registered models that are not running would otherwise
load all eight at once (every worker reading its weights and taking its memory together, the machine's
disk and cores shared eight ways, and no model ready sooner for it). At most `limit` run at a time (config
`server.max_loading`, 1 by default; 0: no limit); the others wait in line, first come first served, and
`/v1/models` lists each waiting model with its place in the line (`load_position`)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

from xitui.core.config import DEFAULT_MAX_LOADING

log = logging.getLogger("xitui.supervisor")

T = TypeVar("T")


class LoadQueue:
    """The loads on request: which run now, which wait and in what order."""

    def __init__(self, limit: int = DEFAULT_MAX_LOADING):
        self.limit = max(0, int(limit))
        #: Names waiting for their turn, first in line first; names whose load runs.
        self.waiting: list[str] = []
        self.loading: list[str] = []
        self._turns = asyncio.Semaphore(self.limit) if self.limit else None

    def position(self, name: str) -> int | None:
        """Where `name` waits in line (1: next to load); None when it does not wait."""
        for place, waiting in enumerate(self.waiting, start=1):
            if waiting.lower() == name.lower():
                return place
        return None

    def is_loading(self, name: str) -> bool:
        return any(loading.lower() == name.lower() for loading in self.loading)

    def listing(self, name: str) -> dict[str, Any]:
        """What /v1/models says of a model that loads on request beyond that: `loading`, or `queued to load`
        with its `load_position` (1: next); nothing when neither."""
        if self.is_loading(name):
            return {"state": "loading"}
        place = self.position(name)
        return {} if place is None else {"state": "queued to load", "load_position": place}

    async def run(self, name: str, load: Coroutine[Any, Any, T]) -> T:
        """Run `load` (the launch made for a request naming `name`) when its turn comes."""
        if self._turns is None:
            return await load
        if self._turns.locked():
            log.info("loading %s waits its turn: %d load(s) on request run (server.max_loading = %d), %d wait "
                     "before it", name, len(self.loading), self.limit, len(self.waiting))
        self.waiting.append(name)
        try:
            await self._turns.acquire()
        except BaseException:
            load.close()  # never started: nothing to undo
            raise
        finally:
            self.waiting.remove(name)
        self.loading.append(name)
        try:
            return await load
        finally:
            self.loading.remove(name)
            self._turns.release()
