"""The restart policy for workers that die on their own (xitui/server/runtime/restarts.py), with a clock of the test's
own: backoff, the per-hour cap, causes in words, the request seen at two deaths. No server, no weights."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from xitui import wire
from xitui.server.runtime.restarts import HOUR, InFlight, Restarts, exit_cause, stopped_on_purpose
from xitui.tui.data import model_detail


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_backoff_doubles_and_the_hour_caps_the_restarts() -> None:
    clock = Clock()
    policy = Restarts(per_hour=5, clock=clock)
    delays = []
    for _ in range(5):
        decision = policy.crashed("SIGSEGV")
        delays.append(decision.delay)
        clock.now += 60
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert policy.count == 5 and policy.by_cause == {"SIGSEGV": 5}
    given_up = policy.crashed("SIGABRT")
    assert given_up.delay is None and policy.count == 5
    assert given_up.reason is not None and "\n" not in given_up.reason
    assert "crashed too often" in given_up.reason and "the last: SIGABRT" in given_up.reason
    assert "server.max_restarts is 5" in given_up.reason
    assert policy.last_cause == "SIGABRT"
    # an hour after the first restart, one more is allowed, and its wait follows the restarts still in the hour
    clock.now = 1000.0 + HOUR
    again = policy.crashed("SIGSEGV")
    assert again.delay == 8.0 and again.recent == 5
    # a long quiet spell: the backoff starts over
    clock.now += 2 * HOUR
    assert policy.crashed("SIGSEGV").delay == 0.5


def test_the_wait_is_capped_and_zero_restarts_means_none() -> None:
    clock = Clock()
    policy = Restarts(per_hour=20, clock=clock, max_delay=30.0)
    delays = [policy.crashed("exit code 1").delay for _ in range(10)]
    assert delays[-1] == 30.0 and max(d or 0 for d in delays) == 30.0
    never = Restarts(per_hour=0, clock=clock).crashed("SIGSEGV")
    assert never.delay is None and "not restarted (server.max_restarts is 0)" in (never.reason or "")


def test_causes_are_named() -> None:
    assert exit_cause(-signal.SIGSEGV) == "SIGSEGV"
    assert exit_cause(-signal.SIGABRT) == "SIGABRT"
    assert exit_cause(-signal.SIGKILL) == "SIGKILL, probably the out-of-memory killer"
    assert exit_cause(3) == "exit code 3"
    assert exit_cause(None).startswith("it ended")
    assert exit_cause(-200) == "signal 200"
    assert stopped_on_purpose(-signal.SIGTERM) and stopped_on_purpose(-signal.SIGINT)
    assert not stopped_on_purpose(-signal.SIGSEGV) and not stopped_on_purpose(1) and not stopped_on_purpose(None)


def test_a_request_in_flight_at_two_deaths_is_the_suspect() -> None:
    policy = Restarts(per_hour=10, clock=Clock())
    poison = wire.generate("x" * 500, {"constraint": {"gbnf": "root ::= " + "(" * 100}})
    poison["id"] = 7
    first = InFlight.of(poison, "127.0.0.1:5000")
    bystander = InFlight.of(wire.generate("hello", {}), "127.0.0.1:5001")
    assert policy.crashed("SIGSEGV", [first, bystander]).suspects == []
    # the same request sent again, from another port (so under another id): the same fingerprint
    again = InFlight.of({**poison, "id": 8}, "127.0.0.1:6000")
    assert again.key == first.key and again.key != bystander.key
    other = InFlight.of({"kind": "chat", "id": 9, "messages": [{"role": "user", "content": "hi"}], "params": {}},
                        None)
    suspects = policy.crashed("SIGSEGV", [again, other]).suspects
    assert [s.key for s in suspects] == [first.key]
    line = suspects[0].line()
    assert line.startswith(f"generate request {first.key} from 127.0.0.1:6000 (") and "'xxxx" in line
    assert len(line) < 200 and "an unknown client" in other.line()
    # what is remembered is bounded
    for i in range(Restarts.KEEP + 50):
        policy.crashed("SIGSEGV", [InFlight.of(wire.embed([str(i)], True), None)])
    assert len(policy.seen) == Restarts.KEEP


def test_describe_and_the_dashboard_show_the_restarts() -> None:
    policy = Restarts(per_hour=3, clock=Clock())
    assert policy.describe()["restarts"] == 0
    assert "restarted" not in model_detail("m", {"model_name": "m", "state": "ready", **policy.describe()})
    policy.crashed("SIGSEGV")
    shown = policy.describe()
    assert shown["restarts"] == 1 and shown["last_crash"] == "SIGSEGV" and shown["last_crash_at"]
    assert "restarted once, last after SIGSEGV" in model_detail("m", {"model_name": "m", "state": "ready", **shown})
    policy.crashed("SIGABRT")
    assert "restarted 2 times, last after SIGABRT" in model_detail("m", {"state": "ready", **policy.describe()})


def test_the_cap_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from xitui.core.config import ConfigError, load_config, set_value

    monkeypatch.setenv("XITUI_CONFIG", str(tmp_path / "config.toml"))
    assert load_config().server.max_restarts == 5
    with pytest.raises(ConfigError, match="server.max_restarts: restarts per hour, 0 or more"):
        set_value("server.max_restarts", "-1")
    set_value("server.max_restarts", "0")
    assert load_config().server.max_restarts == 0
