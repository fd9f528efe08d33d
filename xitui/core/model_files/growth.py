"""Progress of files being written, read from their size on disk (in a thread): what downloads and conversions
show, whatever the library doing the writing reports (or does not)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

Progress = Callable[[float, str], None]


class Growth:
    """Reports `measure()` bytes against `total` as `stage X of Y MiB, N s left`, the fraction between `low`
    and `high`, until the block it guards ends; a value only when it has grown."""

    def __init__(self, measure: Callable[[], int], total: int, stage: str, progress: Progress, *,
                 low: float = 0.05, high: float = 0.9):
        self.measure, self.total, self.stage, self.progress = measure, max(1, total), stage, progress
        self.low, self.high = low, high
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="file-growth")

    def _run(self) -> None:
        start, last = time.monotonic(), -1.0
        while not self.stop.wait(0.2):
            try:
                done = min(max(self.measure(), 0) / self.total, 1.0)
            except OSError:
                continue
            if done <= last:
                continue
            last = done
            elapsed = time.monotonic() - start
            left = f", {elapsed * (1 - done) / done:.0f} s left" if done > 0.02 else ""
            self.progress(self.low + (self.high - self.low) * done,
                          f"{self.stage} {done * self.total / 2**20:.1f} of {self.total / 2**20:.1f} MiB{left}")

    def __enter__(self) -> Growth:
        self.progress(self.low, self.stage)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
