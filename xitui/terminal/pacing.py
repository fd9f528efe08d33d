"""How a view of a streaming answer keeps out of the model's way: frames paced to a share of a core, and a
lower scheduling priority for the view's process.

Measured on 2 cores (issue 25): an answer drawn as fast as pieces came cost the model a quarter to a third of
its speed, because llama.cpp's threads wait for each other at every step and a view that takes a core from
one of them stalls them all. So a view draws at most `share` of a core: after each frame it waits the frame's
cost divided by `share` (between `shortest` and `longest`), and the text it has not drawn yet waits with it.
A cheap frame comes again soon (20 a second); a costly one (a long table re-laid) less often.
"""

from __future__ import annotations

import os
import time

from xitui.core.config import VIEW_YIELDED_ENV

#: The share of one core a view may spend drawing while an answer streams.
SHARE = 0.03
#: Frames come at most this often (the eye reads no faster) and at least this often (text never lags more).
SHORTEST, LONGEST = 1 / 20, 0.5


class FramePacer:
    """When the next frame is due, from what the last ones cost (CPU seconds of the drawing thread)."""

    def __init__(self, share: float = SHARE, shortest: float = SHORTEST, longest: float = LONGEST) -> None:
        self.share, self.shortest, self.longest = share, shortest, longest
        self.delay = shortest
        self._clock = time.thread_time()
        self._last = 0.0

    def due(self) -> bool:
        """Whether a frame may be drawn now (the wait since the last one is over)."""
        return time.monotonic() - self._last >= self.delay

    def drawn(self, cost: float | None = None) -> float:
        """A frame was drawn for `cost` CPU seconds (default: what the drawing thread spent since the last
        frame, the layout and painting that followed it included); returns the wait before the next."""
        clock = time.thread_time()
        if cost is None:
            cost = clock - self._clock
        self._clock = clock
        self._last = time.monotonic()
        self.delay = min(self.longest, max(self.shortest, cost / self.share))
        return self.delay


def yield_to_models(niceness: int) -> int:
    """Lower this process's scheduling priority by `niceness` (the config's; 0 leaves it), so that when the
    cores are short the view's frames wait and the model's tokens do not. Returns the nice value now. Once
    per process (a view started by a view that yielded already does not yield again). Call it once any
    server this process starts is running: children inherit it."""
    if niceness <= 0 or not hasattr(os, "setpriority") or os.environ.get(VIEW_YIELDED_ENV):
        return os.getpriority(os.PRIO_PROCESS, 0) if hasattr(os, "getpriority") else 0
    # Linux keeps a nice value per thread: each one running now, and the main thread's for those started later
    tasks = [int(t) for t in os.listdir("/proc/self/task")] if os.path.isdir("/proc/self/task") else [0]
    for tid in tasks:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + niceness))
        except OSError:  # the thread ended meanwhile
            continue
    os.environ[VIEW_YIELDED_ENV] = str(niceness)
    return os.getpriority(os.PRIO_PROCESS, 0)
