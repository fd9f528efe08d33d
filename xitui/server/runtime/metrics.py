"""What each replica counts while it serves: requests, tokens, speeds and latency histograms (`describe`, the
dashboard and /metrics read them)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from xitui import wire

#: Upper bounds of the latency histograms /metrics exposes (seconds): time to first token, and time per
#: generated token after it.
TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)


@dataclass
class Histogram:
    """Observations counted into fixed buckets (Prometheus' cumulative form is made when scraped)."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0
    count: int = 0

    def observe(self, value: float, times: int = 1) -> None:
        if not self.counts:
            self.counts = [0] * len(self.bounds)
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                self.counts[i] += times
                break
        self.total += value * times
        self.count += times


@dataclass
class Metrics:
    """One replica's counters and latest speeds, as `describe` and the dashboard show them."""

    requests: int = 0
    errors: int = 0
    in_flight: int = 0
    tokens_generated: int = 0
    tokens_prompt: int = 0
    last_ttft: float | None = None
    last_tokens_per_s: float | None = None
    #: Times a request was put back to wait for room in the shared KV cache (llama.cpp), since launch.
    preempted: int = 0
    #: Speculative decoding (llama.cpp): tokens drafted and tokens the model accepted, since launch.
    drafted: int = 0
    accepted: int = 0
    #: Cells of the shared KV cache in use as the last answer ended, that answer's own included (llama.cpp).
    kv_used: int | None = None
    #: Texts in the last and in the largest embedding batch (dynamic batching at work).
    last_batch_size: int | None = None
    max_batch_size: int = 0
    #: When the last request ended (epoch seconds; None: never used), for the idle time.
    last_used: float | None = None
    #: Latencies for /metrics (not in describe).
    ttft: Histogram = field(default_factory=lambda: Histogram(TTFT_BUCKETS))
    per_token: Histogram = field(default_factory=lambda: Histogram(TOKEN_BUCKETS))

    def as_dict(self) -> wire.MetricsRecord:
        return {"requests": self.requests, "errors": self.errors, "in_flight": self.in_flight,
                "tokens_generated": self.tokens_generated, "tokens_prompt": self.tokens_prompt,
                "last_ttft": self.last_ttft, "last_tokens_per_s": self.last_tokens_per_s, "preempted": self.preempted,
                "drafted": self.drafted, "accepted": self.accepted, "kv_used": self.kv_used,
                "last_batch_size": self.last_batch_size, "max_batch_size": self.max_batch_size,
                "last_used": self.last_used}

    def started(self) -> None:
        self.requests += 1
        self.in_flight += 1

    def ended(self) -> None:
        self.in_flight -= 1
        self.last_used = time.time()

    def record(self, msg: wire.Answer) -> None:
        """Note what a request's last message says (speed, tokens, batch size, errors)."""
        if msg["kind"] == "error":
            self.errors += msg["status"] >= 500
        elif msg["kind"] == "done":
            self.last_ttft = msg["ttft"]
            self.last_tokens_per_s = msg["tokens_per_s"]
            usage = msg["usage"]
            generated = usage["completion_tokens"]
            self.tokens_generated += generated
            self.tokens_prompt += usage["prompt_tokens"]
            self.ttft.observe(self.last_ttft)
            if self.last_tokens_per_s and generated > 1:  # each token after the first took 1 / rate
                self.per_token.observe(1 / self.last_tokens_per_s, generated - 1)
            self.preempted += msg.get("preempted", 0)
            self.drafted += msg.get("drafted", 0)
            self.accepted += msg.get("accepted", 0)
            self.kv_used = msg.get("kv_used", self.kv_used)
        elif msg["kind"] == "reranked":
            self.tokens_prompt += msg["tokens"]
        elif msg["kind"] == "embedded":
            self.tokens_prompt += msg["tokens"]
            self.last_batch_size = msg["batch"]
            self.max_batch_size = max(self.max_batch_size, msg["batch"])
