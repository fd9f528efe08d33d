"""A launched model as the server holds it: its plan, its replicas, and what `describe` says of it."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xitui import wire
from xitui.core.errors import ModelFailedError, XituiError
from xitui.core.machine.estimate import Estimate
from xitui.server.runtime.launch_plan import LaunchPlan
from xitui.server.runtime.metrics import Metrics
from xitui.server.runtime.restarts import Restarts
from xitui.server.runtime.worker_process import Replica


@dataclass
class Model:
    """One launched model: one or more replicas (worker processes) of one plan, and their state together."""

    uid: str
    plan: LaunchPlan
    request: dict[str, Any]
    replicas: list[Replica]
    ttl: float | None = None
    restore: bool = False
    estimate: Estimate | None = None
    launched_at: float = field(default_factory=time.time)
    ready_at: float | None = None
    #: Why the launch failed (a replica that could not load, files that are gone...).
    failure: str | None = None
    settling: asyncio.Task[None] | None = None
    #: Its workers' deaths and restarts (the policy the supervisor follows), and the restarts under way
    #: by replica index.
    restarts: Restarts = field(default_factory=Restarts)
    restarting: dict[int, asyncio.Task[None]] = field(default_factory=dict)

    @property
    def state(self) -> str:
        states = {r.state for r in self.replicas}
        if self.failure is not None or not self.replicas or states == {"error"}:
            return "error"
        if "launching" in states and not ("ready" in states and self.restarting):
            return "launching"  # a model whose other replicas serve while one restarts is ready
        return "ready"

    @property
    def reads(self) -> frozenset[str]:
        """What the model reads beside text ("images", "audio"), as its workers said when they loaded: a GGUF
        with its projector, a PyTorch vision model."""
        return frozenset(kind for r in self.replicas for kind in (r.info.get("reads") or ()))

    @property
    def reads_images(self) -> bool:
        return "images" in self.reads

    @property
    def error(self) -> str | None:
        if self.failure is not None:
            return self.failure
        errors = [r.error for r in self.replicas if r.error]
        if self.state == "error":
            return errors[0] if errors else "no replica is running"
        if errors:  # some replicas died, the others serve
            return "; ".join(f"replica {r.index}: {r.error}" for r in self.replicas if r.error)
        return None

    @property
    def pid(self) -> int | None:
        return self.replicas[0].pid if self.replicas else None

    @property
    def pids(self) -> list[int]:
        return [r.pid for r in self.replicas if r.pid is not None and r.state != "error"]

    @property
    def log_path(self) -> Path:
        return self.replicas[0].log_path

    async def wait_restarts(self) -> None:
        """While no replica serves and some are being restarted after a crash, wait until one is back (or
        its restart has failed)."""
        while not any(r.state == "ready" for r in self.replicas):
            under_way = [t for t in self.restarting.values() if not t.done()]
            if not under_way:
                return
            await asyncio.wait(under_way, return_when=asyncio.FIRST_COMPLETED)

    def in_flight(self) -> int:
        return sum(r.metrics.in_flight for r in self.replicas)

    def slots(self) -> int:
        """Requests its ready replicas decode together."""
        return sum(int(r.info.get("n_parallel") or 1) for r in self.replicas if r.state == "ready")

    def free_slots(self) -> int:
        return max(0, self.slots() - self.in_flight())

    def choice_share(self) -> int:
        """The choices (`n`) of one request that may always run together: half the slots, at least one (more
        only while a slot stays free for others: generation.ChoiceTurns)."""
        return max(1, self.slots() // 2)

    def idle_since(self) -> float | None:
        """When the model last finished a request (or became ready); None while it is busy or launching."""
        if self.state != "ready" or self.in_flight():
            return None
        used = [r.metrics.last_used for r in self.replicas if r.metrics.last_used]
        return max([self.ready_at or self.launched_at, *used])

    def unload_at(self) -> float | None:
        since = self.idle_since()
        return None if since is None or self.ttl is None else since + self.ttl

    def metrics(self) -> wire.MetricsRecord:
        """The replicas' metrics together (speeds from the replica used last)."""
        parts = [r.metrics for r in self.replicas]
        total = Metrics()
        for m in parts:
            total.requests += m.requests
            total.errors += m.errors
            total.in_flight += m.in_flight
            total.tokens_generated += m.tokens_generated
            total.tokens_prompt += m.tokens_prompt
            total.preempted += m.preempted
            total.drafted += m.drafted
            total.accepted += m.accepted
            total.max_batch_size = max(total.max_batch_size, m.max_batch_size)
        used = [m for m in parts if m.last_used]
        if used:
            last = max(used, key=lambda m: m.last_used or 0)
            total.last_used = last.last_used
            total.last_ttft, total.last_tokens_per_s = last.last_ttft, last.last_tokens_per_s
            total.last_batch_size = last.last_batch_size
        return total.as_dict()

    def memory_rss(self) -> int | None:
        sizes = [s for s in (r.memory_rss() for r in self.replicas) if s is not None]
        return sum(sizes) if sizes else None

    def progress(self) -> tuple[float, str]:
        """The slowest replica's progress and stage."""
        if not self.replicas:
            return 0.0, "error" if self.failure else "starting"
        slowest = min(self.replicas, key=lambda r: r.progress)
        return slowest.progress, slowest.stage

    def describe(self) -> wire.ModelDescription:
        """Xinference's describe fields, plus what a dashboard shows (state, pid, memory, metrics, replicas)."""
        data = self.plan.describe()
        first = self.replicas[0] if self.replicas else None
        info = first.info if first else {}
        progress, stage = self.progress()
        # the launch took as long as its slowest replica: its stages say where that time went
        slowest = max((r for r in self.replicas if r.launch_seconds is not None),
                      key=lambda r: r.launch_seconds or 0.0, default=None)
        data.update({
            "model_engine": self.plan.engine,
            "replica": len(self.replicas) or int(self.request.get("replica") or 1),
            "state": self.state,
            "error": self.error,
            "progress": 1.0 if self.state == "ready" else progress,
            "stage": "ready" if self.state == "ready" else stage,
            "pid": self.pid,
            "memory_rss": self.memory_rss(),
            "launched_at": self.launched_at,
            "launch_seconds": slowest.launch_seconds if slowest else None,
            "launch_stages": slowest.stages if slowest else None,
            "start": first.start if first else None,
            "device": info.get("device"),
            "chat_format": info.get("chat_format"),
            "metrics": self.metrics(),
            "ttl": self.ttl,
            "idle_since": self.idle_since(),
            "unload_at": self.unload_at(),
            "restore": self.restore,
            "estimate": self.estimate.as_dict() if self.estimate else None,
            "replicas": [r.describe() for r in self.replicas],
            **self.restarts.describe(),
        })
        if self.plan.converted_to:
            data["converted_to"] = self.plan.converted_to
            data["engine_reason"] = self.plan.engine_reason
        if info.get("context_length"):
            data["context_length"] = info["context_length"]
        if info.get("n_threads"):
            data["n_threads"] = info["n_threads"]
        if info.get("kv_cells"):
            data["kv_cells"] = info["kv_cells"]
        if info.get("batching"):
            data["batching"] = info["batching"]
        if info.get("speculative"):
            data["speculative"] = info["speculative"]
        if info.get("projector"):  # Xinference's launch field
            data["multimodal_projector"] = info["projector"]
        if "reads" in info:  # what the model reads beside text (a projector's worker, a vision model's)
            data["reads"] = info["reads"]
        slots = int(info.get("n_parallel") or 1)  # requests a worker decodes together; more wait their turn
        busy = [r.metrics.in_flight for r in self.replicas]
        data.update({"slots": slots, "running": sum(min(n, slots) for n in busy),
                     "queued": sum(max(0, n - slots) for n in busy)})
        if self.estimate is not None and self.estimate.slots_reason:
            data["slots_reason"] = self.estimate.slots_reason
        return data

    def pick(self) -> Replica:
        """The least busy ready replica (fewest requests in flight, then fewest served)."""
        ready = [r for r in self.replicas if r.state == "ready"]
        if not ready:
            state = self.state
            if state == "launching":
                raise XituiError(f"model {self.uid!r} is still launching; wait until it is ready")
            raise ModelFailedError(f"model {self.uid!r} is in error: {self.error}")
        return min(ready, key=lambda r: (r.metrics.in_flight, r.metrics.requests))
