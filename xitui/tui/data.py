"""What the dashboard shows, read from the server in one go, and how each value is written in a cell.

Fields a server does not report (a real Xinference has no pid, memory or metrics) are written `—`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from xitui.core import units
from xitui.core.safe_text import safe_line
from xitui.core.specs.names import MODEL_TYPES

DASH = "—"


@dataclass
class Snapshot:
    """One reading of the server: running models, machine resources (and registrations, given to snapshot
    tests; the dashboard reads them apart)."""

    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Registered models not running that a request naming them loads (xitui's server.autoload), by name.
    loadable: dict[str, dict[str, Any]] = field(default_factory=dict)
    resources: dict[str, Any] | None = None
    registrations: list[dict[str, Any]] | None = None
    taken_at: float = field(default_factory=time.time)


def fetch(client: Any) -> Snapshot:
    """Read the server's models and resources (blocking: run it in a worker thread). Resources are xitui's
    own route."""
    from xitui.core.errors import ServerUnavailableError, XituiError

    models, loadable = client.models_and_loadable()
    snap = Snapshot(models=models, loadable=loadable)
    try:
        snap.resources = client.resources()
    except ServerUnavailableError:
        raise
    except XituiError:
        snap.resources = None  # a server without the route (Xinference)
    return snap


def fetch_registrations(client: Any) -> tuple[list[dict[str, Any]], list[str]]:
    """Every type's registrations, and a line for each type that could not be read (blocking). Apart from
    the models read, and type by type: offline, Xinference 4.1 never answers its LLM listing (the read times
    out), which must neither hold the models table nor hide the embedding and rerank registrations."""
    from xitui.core.errors import XituiError

    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for kind in MODEL_TYPES:
        try:
            items = client.list_model_registrations(kind, detailed=True)
        except XituiError as exc:
            failed.append(f"{kind}: " + " ".join(str(exc).split()))
            continue
        rows.extend({**item, "model_type": kind} for item in items)
    return rows, failed


def mark_loadable(rows: list[dict[str, Any]], loadable: dict[str, Any]) -> list[dict[str, Any]]:
    """`rows` with `loads_on_request` (not running, and a request naming it launches it), from the latest
    models read: a launch or a stop shows in the registrations at the next read, not at theirs."""
    return [{**row, "loads_on_request": row["model_name"] in loadable} for row in rows]


def human_bytes(value: Any) -> str:
    return units.human_bytes(value, missing=DASH)


def duration(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)) or seconds < 0:
        return DASH
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def state_text(model: dict[str, Any]) -> str:
    """launching 40% (stage) / ready / error: reason; a server without states is `ready` once listed."""
    state = model.get("state") or "ready"
    if state == "launching":
        progress = model.get("progress")
        percent = f" {progress * 100:.0f}%" if isinstance(progress, (int, float)) else ""
        stage = model.get("stage")
        return f"launching{percent}" + (f" ({stage})" if stage else "")
    if state == "error":
        return f"error: {model.get('error') or 'unknown'}"
    return str(state)


MODEL_COLUMNS = ("uid", "state", "type", "engine", "device", "RAM", "GPU mem", "req", "busy", "ttft", "tok/s",
                 "idle")
#: Long states (a download's stage, an error's reason) are cut in the table; the line under it has them whole.
STATE_WIDTH = 20
_ENGINES = {"sentence_transformers": "sentence-tf", "llama.cpp": "llama.cpp", "transformers": "transformers"}


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def gpu_memory_by_model(resources: dict[str, Any] | None) -> dict[str, int]:
    """GPU memory each model's worker holds, over all GPUs (NVML's per-process memory by pid)."""
    held: dict[str, int] = {}
    for gpu in (resources or {}).get("gpus") or []:
        for proc in gpu.get("processes") or []:
            if proc.get("model_uid") and isinstance(proc.get("memory_used"), int):
                held[proc["model_uid"]] = held.get(proc["model_uid"], 0) + proc["memory_used"]
    return held


def model_row(uid: str, model: dict[str, Any], gpu_held: dict[str, int], now: float) -> tuple[str, ...]:
    """The cells of one model's row, in MODEL_COLUMNS order (each one line of safe text: a server may send
    anything; the table shows them as text, never as markup)."""
    metrics = model.get("metrics") or {}
    engine = _ENGINES.get(str(model.get("model_engine")), model.get("model_engine") or model.get("model_format"))
    quant = model.get("quantization")
    engine_text = " ".join(str(v) for v in (engine, quant if quant and quant != "none" else None) if v) or DASH
    ttft = metrics.get("last_ttft")
    rate = metrics.get("last_tokens_per_s")
    last = metrics.get("last_used") or model.get("launched_at")
    ready = (model.get("state") or "ready") == "ready"
    if "idle_since" in model:  # xitui's server says when a model went idle and when its ttl unloads it
        busy = bool(metrics.get("in_flight"))
        idle = units.idle_text(model.get("idle_since"), model.get("unload_at"), now, busy=busy)
    else:
        idle = duration(now - last) if ready and isinstance(last, (int, float)) and not metrics.get("in_flight") \
            else DASH
    kind = model.get("model_type")
    return tuple(safe_line(cell) for cell in (
        uid,
        clip(safe_line(state_text(model)), STATE_WIDTH),
        "emb" if kind == "embedding" else str(kind or DASH),
        engine_text,
        str(model.get("device") or DASH),
        human_bytes(model.get("memory_rss")),
        human_bytes(gpu_held.get(uid)) if uid in gpu_held else DASH,
        str(metrics["requests"]) if "requests" in metrics else DASH,
        str(metrics["in_flight"]) if "in_flight" in metrics else DASH,
        f"{ttft * 1000:.0f} ms" if isinstance(ttft, (int, float)) else DASH,
        f"{rate:.1f}" if isinstance(rate, (int, float)) else DASH,
        idle,
    ))


def model_detail(uid: str | None, model: dict[str, Any] | None) -> str:
    """The line under the table: the selected model in full (name, state with its whole reason, format)."""
    if uid is None or model is None:
        return ""
    parts = [f"{uid}: {model.get('model_name') or DASH}", state_text(model)]
    size = model.get("model_size_in_billions")
    size_text = size and f"{str(size).replace('_', '.')}B"
    fmt = " ".join(str(v) for v in (model.get("model_format"), model.get("quantization"), size_text) if v)
    if fmt:
        parts.append(fmt)
    if model.get("context_length"):
        parts.append(f"context {model['context_length']}")
    if model.get("chat_format"):
        parts.append(f"chat: {model['chat_format']}")
    replicas = model.get("replicas") or []
    if len(replicas) > 1:  # each replica: pid, state when not ready, requests served
        each = [f"{r.get('pid') or DASH}" + ("" if r.get("state") == "ready" else f" {r.get('state')}")
                + f" {(r.get('metrics') or {}).get('requests', 0)} req" for r in replicas]
        parts.append(f"{len(replicas)} replicas: " + ", ".join(each))
    elif model.get("pid"):
        parts.append(f"pid {model['pid']}")
    if (model.get("slots") or 1) > 1:
        parts.append(f"{model['slots']} slots: {model.get('running', 0)} running, {model.get('queued', 0)} queued")
    metrics = model.get("metrics") or {}
    if model.get("speculative") == "ngram":  # speculative decoding: how many drafted tokens the model took
        drafted = metrics.get("drafted") or 0
        parts.append(f"ngram drafts: {metrics.get('accepted', 0) / drafted:.0%} of {drafted} accepted" if drafted
                     else "ngram drafts: none yet")
    if model.get("launch_seconds") is not None:
        parts.append("launched in " + units.launch_text(model["launch_seconds"], model.get("launch_stages"),
                                                          model.get("start")))
    if model.get("ttl") is not None:
        parts.append(f"ttl {units.human_duration(model['ttl'])}")
    if model.get("restore"):
        parts.append("restores at server start")
    if model.get("restarts"):  # its worker died and the server started it again
        times = "once" if model["restarts"] == 1 else f"{model['restarts']} times"
        parts.append(f"restarted {times}, last after {model.get('last_crash') or 'a crash'}")
    return safe_line(" · ".join(parts))


REGISTRATION_COLUMNS = ("name", "type", "kind", "formats", "abilities", "persisted")


def registration_row(item: dict[str, Any]) -> tuple[str, ...]:
    specs = item.get("model_specs") or []
    formats = sorted({f"{s.get('model_format')} {s.get('quantization')}" for s in specs if s.get("model_format")})
    shown = ", ".join(formats[:3]) + (f" +{len(formats) - 3}" if len(formats) > 3 else "")
    abilities = ", ".join(item.get("model_ability") or [])
    if item.get("dimensions"):
        abilities = f"{item['dimensions']} dims"
    elif item.get("model_type") == "rerank" and item.get("max_tokens"):
        abilities = f"ranks, {item['max_tokens']} tokens"
    persisted = item.get("persisted")
    return tuple(safe_line(cell) for cell in (
        str(item.get("model_name")),
        str(item.get("model_type")),
        ("builtin" if item.get("is_builtin") else "custom") + (", on request" if item.get("loads_on_request") else ""),
        shown or DASH,
        abilities or DASH,
        DASH if persisted is None or item.get("is_builtin") else ("yes" if persisted else "no"),
    ))


def sort_registrations(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The bundled demo models first (the chat model leading), then custom ones, then the other builtins; by
    name within each."""
    from xitui.core.specs.bundled import BUNDLED_ORDER

    def key(item: dict[str, Any]) -> tuple[int, int, str]:
        name = str(item.get("model_name"))
        group = 0 if name.startswith("demo-") else (1 if not item.get("is_builtin") else 2)
        rank = BUNDLED_ORDER.index(name) if name in BUNDLED_ORDER else len(BUNDLED_ORDER)
        return group, rank, name.lower()

    return sorted(items, key=key)
