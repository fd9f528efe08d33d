"""`launch`, `list`, `terminate`, `logs`."""

from __future__ import annotations

import time
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from xitui.cli import completion
from xitui.cli.common import ApiKey, Endpoint, Json, ModelType, ModelUid, connect
from xitui.core.errors import XituiError
from xitui.core.safe_text import safe, safe_line
from xitui.core.units import human_bytes, human_duration, launch_text
from xitui.core.units import idle_text as units_idle_text
from xitui.terminal import output

if TYPE_CHECKING:  # annotations only: the CLI does not import the wire's types to start
    from xitui import wire


class Speculative(str, Enum):
    """--speculative's values (the launch field's)."""

    ngram = "ngram"
    off = "off"


def launch(
    model_name: Annotated[str, typer.Option("--model-name", "-n", help="A registered model name.",
                                                      autocompletion=completion.model_names)],
    model_type: ModelType = "LLM",
    model_format: Annotated[str | None, typer.Option("--model-format", "-f", help="pytorch or ggufv2.")] = None,
    size_in_billions: Annotated[
        str | None, typer.Option("--size-in-billions", "-s", help="Which size, when the spec has several.")
    ] = None,
    quantization: Annotated[str | None, typer.Option("--quantization", "-q", help="Which quantization.")] = None,
    model_uid: Annotated[str | None, typer.Option(
        "--model-uid", "-u", help="Uid to give it (default: its name).")] = None,
    model_engine: Annotated[str | None, typer.Option(
        "--model-engine", help="Engine (inferred from the format).")] = None,
    context_length: Annotated[int | None, typer.Option(
        "--context-length", "-c", min=16, help="Tokens of context to allocate (default: the spec's).")] = None,
    replica: Annotated[int, typer.Option("--replica", "-r", min=1, help="Worker processes serving this uid.")] = 1,
    projector: Annotated[str | None, typer.Option(
        "--multimodal-projector", help="A vision GGUF's projector, of those its spec names (default: the first).",
        show_default=False)] = None,
    n_parallel: Annotated[int | None, typer.Option(
        "--n-parallel", min=1, max=64, help="Requests decoded together (default: chosen for the machine).")] = None,
    speculative: Annotated[Speculative | None, typer.Option(
        "--speculative", help="Speculative decoding of greedy answers (llama.cpp): ngram (drafts looked up in the "
                              "prompt and the answer) or off (default: config, off).", show_default=False)] = None,
    ttl: Annotated[str | None, typer.Option(
        "--ttl", help="Unload after this long idle: 30s, 10m, 1h; 0 = once idle, -1 = never (default: config)."
    )] = None,
    restore: Annotated[bool, typer.Option(
        "--restore", help="Bring it back, with these settings, whenever the server starts.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Launch even if the memory estimate says it will not fit.")] = False,
    estimate_only: Annotated[bool, typer.Option(
        "--estimate-only", help="Print the memory it would need and what is free; launch nothing.")] = False,
    as_json: Json = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Launch a registered model into a worker process; prints its uid (--json: its description)."""
    from xitui.client.launching import launch_and_wait
    from xitui.core.errors import XituiError

    client = connect(endpoint, api_key)
    launch: dict[str, Any] = dict(
        model_name=model_name, model_type=model_type, model_format=model_format,
        model_size_in_billions=size_in_billions, quantization=quantization, model_uid=model_uid,
        model_engine=model_engine, replica=replica,
    )
    if projector is not None:  # (Xinference's launch field too)
        launch["multimodal_projector"] = projector
    ours = {"context_length": context_length, "ttl": ttl, "restore": restore or None, "force": force or None,
            "n_parallel": n_parallel, "speculative": speculative.value if speculative else None}
    if client.is_xinference:
        given = [f"--{k.replace('_', '-')}" for k, v in ours.items() if v is not None]
        if given or estimate_only:
            raise XituiError(f"{', '.join(given + ['--estimate-only'] * estimate_only)}: xitui's own, the "
                             f"Xinference server at {client.base_url} does not take it")
    launch.update({k: v for k, v in ours.items() if v is not None})
    if estimate_only:
        found = client.estimate_launch(**{k: v for k, v in launch.items() if k not in ("force", "restore")})
        if as_json:
            output.print_json(found)
        else:
            print(safe(estimate_text(found)))  # it quotes the server's reasons and notes
        return
    start = time.monotonic()
    with output.launch_progress(f"launching {model_uid or model_name}") as on_progress:
        uid = launch_and_wait(client, on_progress, **launch)
    desc = client.describe_model(uid)
    if as_json:  # the launched model as `describe` gives it, with its uid: for scripts
        output.print_json({"model_uid": uid, **desc})
        return
    facts = [f"{time.monotonic() - start:.1f} s", str(desc.get("device") or "")]
    if desc.get("launch_stages"):  # xitui's server: where the server's part of it went
        facts.insert(1, "server " + launch_text(desc.get("launch_seconds"), desc["launch_stages"], desc.get("start")))
    if "chat" in (desc.get("model_ability") or []) and "chat_format" in desc:  # xitui's own field
        facts.append(f"chat format: {desc.get('chat_format') or 'none (add prompt_style or chat_template to chat)'}")
    where = f" on Xinference at {client.base_url}" if client.is_xinference else ""
    if desc.get("ttl") is not None:
        facts.append(f"unloads after {human_duration(desc['ttl'])} idle")
    if desc.get("restore"):
        facts.append("comes back when the server restarts")
    if (desc.get("replica") or 1) > 1:
        facts.append(f"{desc['replica']} replicas")
    if desc.get("kv_cells"):  # xitui's llama.cpp engine: the slots and the cache they share
        facts.append(slots_text(desc))
    output.info(f"{uid} is ready{where} ({', '.join(f for f in facts if f)})")
    if desc.get("converted_to"):  # a PyTorch model xitui runs on llama.cpp
        quant = desc.get("quantization")
        named = f" (its {quant})" if quant and quant != "none" else ""
        output.info(f"{uid} runs on llama.cpp as GGUF {desc['converted_to']}{named}, converted from its safetensors: "
                    f"{desc.get('engine_reason') or ''}")
    print(safe_line(uid))


def slots_text(desc: wire.ModelDescription) -> str:
    """"16 slots (from 2 cores) sharing 8192 cached tokens": how many requests decode together."""
    reason = f" ({desc['slots_reason']})" if desc.get("slots_reason") else ""
    return f"{desc.get('slots') or 1} slots{reason} sharing {desc['kv_cells']} cached tokens"


def estimate_text(found: dict[str, Any]) -> str:
    """`launch --estimate-only` for people: the parts, what is free, the verdict."""
    est = found.get("estimate")
    if est is None:
        return f"{found.get('model_name')}: no estimate: {found.get('reason')}"
    lines = [f"{found.get('model_name')} ({est['engine']}, {est['device']}"
             + (f", context {est['context_length']} tokens" if est.get("context_length") else "")
             + (f", {est['replicas']} replicas" if est["replicas"] > 1 else "")
             + (f", {est['slots']} slots ({est['slots_reason']})" if est.get("slots_reason") else "") + ")"]
    parts = [("weights", est["weights"]), ("KV cache", est["kv_cache"]), ("kept", est.get("kept")),
             ("overhead", est["overhead"]), ("runtime", est["runtime"]), ("CUDA", est.get("gpu_runtime"))]
    parts = [(name, value) for name, value in parts if value or name not in ("kept", "CUDA")]
    lines += [f"  {name:<9} {human_bytes(value):>10}" for name, value in parts]
    lines.append(f"  {'needs':<9} {human_bytes(est['ram']):>10} of memory"
                 + (f", {human_bytes(est['gpu'])} of GPU memory" if est["gpu"] else ""))
    free = f"  {'free':<9} {human_bytes(found['free_ram']):>10} of memory"
    if found.get("free_gpu") is not None:
        free += f", {human_bytes(found['free_gpu'])} of GPU memory"
    lines.append(free)
    for note in est.get("notes") or []:
        lines.append(f"  note: {note}")
    if found["fits"]:
        lines.append("fits")
    else:
        verdict = "does not fit"
        if found.get("largest_context"):
            verdict += f": the largest context that fits is {found['largest_context']} tokens (--context-length)"
        lines.append(verdict + "; --force launches anyway")
    return "\n".join(lines)


def list_models(
    as_json: Json = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Running models: state, process, memory and recent speed; then the registered ones that a request
    naming them loads."""
    client = connect(endpoint, api_key)
    models, waiting = client.models_and_loadable()
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
        pids = [str(r["pid"]) for r in m.get("replicas") or [] if r.get("pid") and r.get("state") != "error"]
        rows.append([
            uid + (" (restores)" if m.get("restore") else ""), m.get("model_name"), m.get("model_type"),
            m.get("model_format"), m.get("model_engine"), state, ",".join(pids) or m.get("pid") or "-",
            human_bytes(m.get("memory_rss")), m.get("slots") if m.get("kv_cells") else "-",
            metrics.get("requests", "-"),
            f"{ttft * 1000:.0f} ms" if ttft is not None else "-", f"{tps:.1f}" if tps else "-", idle_text(m),
            launch_text(m.get("launch_seconds"), start=m.get("start"), detail=False),
        ])
    output.table(["uid", "name", "type", "format", "engine", "state", "pid", "memory", "slots", "requests", "ttft",
                  "tok/s", "idle", "launch"], rows, title="running models")
    if waiting:
        output.info("loads on request: " + ", ".join(waiting))
    if not output.plain():
        output.info(machine_summary(client))


def idle_text(model: wire.ModelDescription, now: float | None = None) -> str:
    now = time.time() if now is None else now
    return units_idle_text(model.get("idle_since"), model.get("unload_at"), now,
                           busy=bool((model.get("metrics") or {}).get("in_flight")))


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
    model_uid: Annotated[str | None, typer.Option("--model-uid", "-u", help="The running model's uid.",
                                                  autocompletion=completion.model_uids)] = None,
    every: Annotated[bool, typer.Option("--all", help="Stop every running model.")] = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Stop a running model (or --all of them) and free its memory."""
    if (model_uid is None) == (not every):
        raise XituiError("terminate: name one model with --model-uid, or stop them all with --all")
    client = connect(endpoint, api_key)
    for uid in [model_uid] if model_uid else list(client.list_models()):
        client.terminate_model(uid)
        output.info(f"terminated {uid}")


def logs(
    model_uid: ModelUid,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing what the worker writes.")] = False,
    replica: Annotated[int, typer.Option("--replica", help="Which replica's log (0 is the first).")] = 0,
    tail: Annotated[int, typer.Option("--bytes", help="How much of the log's end to print first.")] = 16384,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """A running model's worker log (what llama.cpp, transformers and the worker print); -f follows it."""
    import sys

    from xitui.core.safe_text import StreamFilter

    # The log holds what requests brought (a prompt or a grammar a worker chokes on is quoted there): made
    # safe as it comes, like an answer; a progress bar's carriage returns become line breaks.
    shown = StreamFilter()
    client = connect(endpoint, api_key)
    part = client.model_logs(model_uid, offset=-max(1, tail), replica=replica)
    if tail <= 0:  # from the end on: the byte asked for to learn where that is is not printed
        part["text"] = ""
    try:
        while True:
            sys.stdout.write(shown.feed(part["text"].replace("\r\n", "\n").replace("\r", "\n")))
            sys.stdout.flush()
            if not follow:
                return
            if not part["text"]:
                time.sleep(0.5)
            part = client.model_logs(model_uid, offset=part["offset"], replica=replica)
    except KeyboardInterrupt:  # how -f ends
        return
