"""`launch`, `list`, `terminate`."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from xitui.cli import output
from xitui.cli.common import ApiKey, Endpoint, Json, ModelType, ModelUid, connect
from xitui.core.units import human_bytes


def launch(
    model_name: Annotated[str, typer.Option("--model-name", "-n", help="A registered model name.")],
    model_type: ModelType = "LLM",
    model_format: Annotated[str | None, typer.Option("--model-format", "-f", help="pytorch or ggufv2.")] = None,
    size_in_billions: Annotated[
        str | None, typer.Option("--size-in-billions", "-s", help="Which size, when the spec has several.")
    ] = None,
    quantization: Annotated[str | None, typer.Option("--quantization", "-q", help="Which quantization.")] = None,
    model_uid: Annotated[str | None, typer.Option("--model-uid", "-u", help="Uid to give it (default: its name).")] = None,
    model_engine: Annotated[str | None, typer.Option("--model-engine", help="Engine (inferred from the format).")] = None,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Launch a registered model into a worker process; prints its uid."""
    from xitui.client.launching import launch_and_wait

    client = connect(endpoint, api_key)
    start = time.monotonic()
    with output.launch_progress(f"launching {model_uid or model_name}") as on_progress:
        uid = launch_and_wait(
            client, on_progress, model_name=model_name, model_type=model_type, model_format=model_format,
            model_size_in_billions=size_in_billions, quantization=quantization, model_uid=model_uid,
            model_engine=model_engine,
        )
    desc = client.describe_model(uid)
    facts = [f"{time.monotonic() - start:.1f} s", str(desc.get("device") or "")]
    if "chat" in (desc.get("model_ability") or []) and "chat_format" in desc:  # xitui's own field
        facts.append(f"chat format: {desc.get('chat_format') or 'none (add prompt_style or chat_template to chat)'}")
    where = f" on Xinference at {client.base_url}" if client.is_xinference else ""
    output.info(f"{uid} is ready{where} ({', '.join(f for f in facts if f)})")
    print(uid)


def list_models(
    as_json: Json = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Running models: state, process, memory and recent speed."""
    client = connect(endpoint, api_key)
    models = client.list_models()
    if as_json:
        output.print_json(models)
        return
    rows = []
    for uid, m in models.items():
        metrics = m.get("metrics") or {}
        ttft = metrics.get("last_ttft")
        tps = metrics.get("last_tokens_per_s")
        state = m.get("state", "ready")
        if state == "error" and m.get("error"):
            state = f"error: {m['error']}"
        rows.append([
            uid, m.get("model_name"), m.get("model_type"), m.get("model_format"), m.get("model_engine"), state,
            m.get("pid") or "-", human_bytes(m.get("memory_rss")), metrics.get("requests", "-"),
            f"{ttft * 1000:.0f} ms" if ttft is not None else "-", f"{tps:.1f}" if tps else "-",
        ])
    output.table(["uid", "name", "type", "format", "engine", "state", "pid", "memory", "requests", "ttft", "tok/s"],
                 rows, title="running models")
    if not output.plain():
        output.info(machine_summary(client))


def machine_summary(client: Any) -> str:
    """One line: system memory and each GPU's memory (xitui's /v1/resources; other servers may lack it)."""
    from xitui.core.errors import XituiError

    try:
        res = client.resources()
    except XituiError:
        return ""
    mem = res.get("memory") or {}
    parts = [f"memory {human_bytes(mem.get('used'))} of {human_bytes(mem.get('total'))} used"]
    for gpu in res.get("gpus") or []:
        parts.append(f"GPU {gpu['index']} {gpu['name']}: {human_bytes(gpu['memory_used'])} of "
                     f"{human_bytes(gpu['memory_total'])}")
    if not res.get("gpus"):
        parts.append(f"no GPU: {res.get('gpu_note') or 'none found'}")
    return "; ".join(parts)


def terminate(
    model_uid: ModelUid,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Stop a running model and free its memory."""
    connect(endpoint, api_key).terminate_model(model_uid)
    output.info(f"terminated {model_uid}")
