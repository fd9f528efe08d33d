"""What happens when a worker dies on its own (SIGSEGV in llama.cpp, the out-of-memory killer, SIGABRT):
its cause in words, whether and when it is started again, and which request was in flight each time.

No process or event loop here: the supervisor asks `Restarts.crashed` at each death and does what it
answers, so the policy is tested with a clock of its own.
"""

from __future__ import annotations

import hashlib
import signal
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import orjson

from xitui import wire
from xitui.core.config import DEFAULT_MAX_RESTARTS

#: The first restart waits this long; each later one in the same hour twice as long, up to MAX_DELAY.
FIRST_DELAY = 0.5
MAX_DELAY = 30.0
HOUR = 3600.0

#: Signals someone sends to stop a process (Ctrl-C in the server's terminal, `kill`, a service manager
#: stopping the server's whole group): a worker ended by one of them was stopped, not crashed.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT, signal.SIGHUP})


def exit_cause(code: int | None) -> str:
    """A worker's exit status in words: `SIGSEGV`, `SIGKILL, probably the out-of-memory killer`, `exit code 1`."""
    if code is None:
        return "it ended (its exit status is unknown)"
    if code >= 0:
        return f"exit code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    if -code == signal.SIGKILL:
        name += ", probably the out-of-memory killer"
    return name


def stopped_on_purpose(code: int | None) -> bool:
    """Whether the exit status says someone stopped the worker (SIGTERM, SIGINT, SIGHUP)."""
    return code is not None and code < 0 and -code in STOP_SIGNALS


@dataclass(frozen=True)
class InFlight:
    """A request that was in a worker's hands when it died: enough to find it again, no more."""

    key: str
    op: str
    client: str
    size: int
    preview: str

    @classmethod
    def of(cls, request: wire.Work, client: str | None) -> InFlight:
        """The request's fingerprint: a hash of what the worker got but its id (the same request sent again
        has the same one), its size, and its first characters."""
        raw = orjson.dumps({k: v for k, v in request.items() if k != "id"}, option=orjson.OPT_SORT_KEYS)
        if request["kind"] == "generate":
            shown = request["prompt"]
        elif request["kind"] == "rerank":
            shown = request["query"]
        elif request["kind"] == "chat":
            shown = orjson.dumps(request["messages"]).decode()
        else:
            shown = orjson.dumps(request["input"]).decode()
        preview = " ".join(shown.split())[:60]
        return cls(key=hashlib.sha256(raw).hexdigest()[:16], op=request["kind"], client=client or "an unknown client",
                   size=len(raw), preview=preview)

    def line(self) -> str:
        return f"{self.op} request {self.key} from {self.client} ({self.size} bytes: {self.preview!r})"


@dataclass
class Decision:
    """What to do about one death: restart after `delay` seconds, or (delay None) leave it in error."""

    cause: str
    delay: float | None
    #: Restarts within the last hour, this one included when it is made.
    recent: int
    #: One line: why the model stays in error (None when it is restarted).
    reason: str | None = None
    #: Requests seen in flight at an earlier death too: the likely cause.
    suspects: list[InFlight] = field(default_factory=list)


class Restarts:
    """One model's deaths and restarts: the backoff, the per-hour cap, the last cause, the suspects."""

    def __init__(self, per_hour: int = DEFAULT_MAX_RESTARTS, clock: Callable[[], float] = time.monotonic,
                 first_delay: float = FIRST_DELAY, max_delay: float = MAX_DELAY):
        self.per_hour = per_hour
        self.clock = clock
        self.first_delay = first_delay
        self.max_delay = max_delay
        #: When each restart of the last hour was made (clock time).
        self.times: deque[float] = deque()
        #: Restarts made since launch, and by cause (for /metrics).
        self.count = 0
        self.by_cause: Counter[str] = Counter()
        self.last_cause: str | None = None
        #: Wall-clock time of the last death (for describe).
        self.last_at: float | None = None
        #: Requests seen in flight at a death, by fingerprint, the most recent last (at most KEEP).
        self.seen: OrderedDict[str, int] = OrderedDict()

    KEEP = 256

    def crashed(self, cause: str, in_flight: Iterable[InFlight] = ()) -> Decision:
        """Note a death by `cause` with these requests in flight; say whether and when to restart."""
        now = self.clock()
        while self.times and now - self.times[0] >= HOUR:
            self.times.popleft()
        self.last_cause = cause
        self.last_at = time.time()
        suspects = self._note(in_flight)
        recent = len(self.times)
        if recent >= self.per_hour:
            reason = (f"its worker crashed too often ({recent + 1} times within an hour, server.max_restarts "
                      f"is {self.per_hour}; the last: {cause}) and is not restarted: terminate it and launch "
                      "it again") if self.per_hour else \
                (f"its worker died ({cause}) and is not restarted (server.max_restarts is 0): terminate it "
                 "and launch it again")
            return Decision(cause, None, recent, reason, suspects)
        self.times.append(now)
        self.count += 1
        self.by_cause[cause] += 1
        delay = min(self.max_delay, self.first_delay * 2 ** recent)
        return Decision(cause, delay, recent + 1, None, suspects)

    def _note(self, in_flight: Iterable[InFlight]) -> list[InFlight]:
        suspects = []
        for request in {r.key: r for r in in_flight}.values():
            times = self.seen.pop(request.key, 0) + 1
            self.seen[request.key] = times
            if times >= 2:
                suspects.append(request)
        while len(self.seen) > self.KEEP:
            self.seen.popitem(last=False)
        return suspects

    def describe(self) -> wire.ModelDescription:
        return {"restarts": self.count, "last_crash": self.last_cause, "last_crash_at": self.last_at}
