"""GET /metrics: the server's state in Prometheus' text format, read from the supervisor when scraped.

Nothing is counted twice: the figures are the ones `describe` and the dashboard show (each replica's
Metrics, each model's restarts, the supervisor's launch and unload counts), turned into metric families by
prometheus_client at scrape time, so the exposition format (escaping, histogram buckets, `_total` names) is
the library's. A model's series last as long as it is launched: a terminated or unloaded uid has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from xitui.core.machine import memory as machine
from xitui.server.runtime.metrics import Histogram

#: What a scrape answers with (text format 0.0.4).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REPLICA = ["model", "replica"]


def render(supervisor: Any) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(supervisor))
    return generate_latest(registry)


class _Collector:
    def __init__(self, supervisor: Any):
        self.supervisor = supervisor

    def collect(self) -> Iterator[Metric]:
        sup = self.supervisor
        per = {name: kind(f"xitui_{name}", doc, labels=REPLICA) for name, (kind, doc) in _PER_REPLICA.items()}
        ttft = HistogramMetricFamily("xitui_time_to_first_token_seconds",
                                     "Time from a request's arrival at its worker to its first token.", labels=REPLICA)
        per_token = HistogramMetricFamily("xitui_time_per_output_token_seconds",
                                          "Time per generated token after the first.", labels=REPLICA)
        slots = GaugeMetricFamily("xitui_slots", "Requests a replica decodes together.", labels=REPLICA)
        kv = GaugeMetricFamily("xitui_kv_cache_cells", "Tokens the replica's shared KV cache holds (llama.cpp).",
                               labels=REPLICA)
        kv_used = GaugeMetricFamily("xitui_kv_cache_cells_used", "Cells of the shared KV cache in use as the "
                                    "replica's last answer ended, that answer's included (llama.cpp).", labels=REPLICA)
        ready = GaugeMetricFamily("xitui_model_ready", "1 when the model serves requests, 0 launching or in error.",
                                  labels=["model", "model_name", "engine"])
        stages = GaugeMetricFamily("xitui_launch_stage_seconds", "Where the model's launch spent its time.",
                                   labels=["model", "stage"])
        restarts = CounterMetricFamily("xitui_worker_restarts", "Restarts of the model's workers after they died "
                                       "on their own, by cause (a signal's name or an exit code).",
                                       labels=["model", "cause"])
        for uid, model in list(sup.models.items()):
            for cause, n in sorted(model.restarts.by_cause.items()):
                restarts.add_metric([uid, cause], float(n))
            ready.add_metric([uid, model.plan.model_name, model.plan.engine], 1.0 if model.state == "ready" else 0.0)
            desc_stages = max((r for r in model.replicas if r.launch_seconds is not None),
                              key=lambda r: r.launch_seconds or 0.0, default=None)
            for stage, seconds in ((desc_stages.stages if desc_stages else None) or {}).items():
                stages.add_metric([uid, stage], float(seconds))
            for replica in model.replicas:
                labels = [uid, str(replica.index)]
                m = replica.metrics
                count = int(replica.info.get("n_parallel") or 1)
                values = {"requests": m.requests, "request_errors": m.errors,
                          "requests_running": min(m.in_flight, count), "requests_queued": max(0, m.in_flight - count),
                          "prompt_tokens": m.tokens_prompt, "generated_tokens": m.tokens_generated,
                          "preemptions": m.preempted, "draft_tokens": m.drafted, "draft_tokens_accepted": m.accepted,
                          "worker_resident_memory_bytes": replica.memory_rss() or 0}
                for name, value in values.items():
                    per[name].add_metric(labels, float(value))
                _observed(ttft, labels, m.ttft)
                _observed(per_token, labels, m.per_token)
                slots.add_metric(labels, float(count))
                if replica.info.get("kv_cells"):
                    kv.add_metric(labels, float(replica.info["kv_cells"]))
                if m.kv_used is not None:
                    kv_used.add_metric(labels, float(m.kv_used))
        yield from per.values()
        yield from (ttft, per_token, slots, kv, kv_used, ready, stages, restarts)
        launches = CounterMetricFamily("xitui_launches", "Model launches since the server started.",
                                       labels=["start", "result"])
        for (start, result), n in sorted(sup.launches.items()):
            launches.add_metric([start, result], float(n))
        unloads = CounterMetricFamily("xitui_unloads", "Models stopped since the server started, and why.",
                                      labels=["reason"])
        for reason, n in sorted(sup.unloads.items()):
            unloads.add_metric([reason], float(n))
        yield launches
        yield unloads
        yield self._gpu()

    def _gpu(self) -> Metric:
        family = GaugeMetricFamily("xitui_gpu_memory_used_bytes",
                                   "GPU memory held by each model's workers (NVML), by device.",
                                   labels=["model", "gpu"])
        owners = {pid: uid for uid, m in list(self.supervisor.models.items()) for pid in m.pids}
        if not owners:
            return family
        held: dict[tuple[str, str], float] = {}
        for device in machine.gpus(owners)[0]:
            for proc in device["processes"]:
                if proc["model_uid"] and proc["memory_used"]:
                    key = (proc["model_uid"], str(device["index"]))
                    held[key] = held.get(key, 0.0) + proc["memory_used"]
        for (uid, gpu), used in sorted(held.items()):
            family.add_metric([uid, gpu], used)
        return family


_PER_REPLICA: dict[str, tuple[Any, str]] = {
    "requests": (CounterMetricFamily, "Requests a replica received."),
    "request_errors": (CounterMetricFamily, "Requests that ended in a server-side error."),
    "requests_running": (GaugeMetricFamily, "Requests being decoded now."),
    "requests_queued": (GaugeMetricFamily, "Requests waiting for a slot."),
    "prompt_tokens": (CounterMetricFamily, "Prompt tokens of the requests served (embedding inputs too)."),
    "generated_tokens": (CounterMetricFamily, "Tokens generated."),
    "preemptions": (CounterMetricFamily, "Times a request was put back to wait for room in the KV cache."),
    "draft_tokens": (CounterMetricFamily, "Tokens speculative decoding drafted (llama.cpp, greedy answers)."),
    "draft_tokens_accepted": (CounterMetricFamily, "Drafted tokens the model accepted."),
    "worker_resident_memory_bytes": (GaugeMetricFamily, "The worker process's resident memory."),
}


def _observed(family: HistogramMetricFamily, labels: list[str], hist: Histogram) -> None:
    """A histogram's buckets in Prometheus' cumulative form."""
    buckets, running = [], 0
    counts = hist.counts or [0] * len(hist.bounds)
    for bound, n in zip(hist.bounds, counts, strict=True):
        running += n
        buckets.append((repr(float(bound)), running))
    buckets.append(("+Inf", hist.count))
    family.add_metric(labels, buckets, hist.total)
