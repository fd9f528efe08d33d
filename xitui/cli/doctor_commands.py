"""`doctor`: what a user would otherwise find out by failing, one line each with what to do."""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import typer

from xitui.cli.common import ApiKey, Endpoint, Json
from xitui.core.safe_text import safe
from xitui.terminal import output


@dataclass
class Finding:
    """One line of `xitui doctor`: ok, warning or error, and what to do about it."""

    level: str  # "ok", "warning" or "error"
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.level}: {self.what}" + (f" — {self.fix}" if self.fix else "")


def check_config() -> list[Finding]:
    from xitui.core.config import config_path, load_config
    from xitui.core.errors import XituiError

    try:
        config = load_config()
    except XituiError as exc:
        return [Finding("error", str(exc), f"fix or remove {config_path()}")]
    found = [Finding("ok", f"settings read ({config_path()})")]
    if config.api_key:
        found.append(Finding("ok", "the server admits whoever sends the API key, no one else"))
    elif config.server.allow_other_users:
        found.append(Finding("warning", "other users of this machine may use the server (server.allow_other_users)",
                             "`xitui config set server.allow_other_users false` serves only you"))
    else:
        from xitui.core.machine import peers
        found.append(Finding("ok", "the server serves only your user on this machine") if peers.supported() else
                     Finding("warning", "other users of this machine could use the server (the same-user check "
                             "runs on Linux only)", "set an API key: `xitui config set api_key KEY`"))
    if config.server.allowed_envs:
        found.append(Finding("ok", "launches may also set " + ", ".join(config.server.allowed_envs)
                             + " (server.allowed_envs)"))
    return found


def check_server(endpoint: str | None, api_key: str | None) -> list[Finding]:
    from xitui.client import Client
    from xitui.client.autostart import local_address
    from xitui.core.config import Settings, load_config
    from xitui.core.errors import ServerUnavailableError, XituiError

    try:
        config = load_config()
    except XituiError:
        config = Settings()  # the config's own finding says what is wrong with it
    url = endpoint or config.endpoint
    client = Client(url, api_key or config.api_key)
    try:
        kind = client.server_kind()
        client.list_models()
    except XituiError as exc:
        if local_address(url) is not None and isinstance(exc, ServerUnavailableError) and exc.refused:
            return [Finding("warning", f"no server runs at {url}", "any command starts one; or `xitui serve`")]
        return [Finding("error", f"the server at {url} cannot be used: {exc}", "check -e/XITUI_ENDPOINT and --api-key")]
    found = [Finding("ok", f"{'xitui' if kind == 'xitui' else 'an Xinference'} server answers at {url}")]
    if kind == "xitui":
        found += warm_findings(client.status().get("warm_worker") or {})
    return found


def warm_findings(warm: dict) -> list[Finding]:
    """The server's warm worker: forking launches, still importing, or off and why."""
    from xitui.core.units import human_bytes

    state = warm.get("state")
    if state == "ready":
        loaded = ", ".join(warm.get("loaded") or []) or "no engine"
        found = [Finding("ok", f"launches fork from the warm worker ({loaded}"
                               f" imported, {human_bytes(warm.get('memory_rss'))})")]
    elif state == "starting":
        found = [Finding("ok", "the warm worker is importing the engines; launches start cold until it is ready")]
    elif warm.get("error"):
        found = [Finding("warning", f"the warm worker is off: {warm['error']}", "launches start cold (slower)")]
    else:
        found = [Finding("ok", "no warm worker (server.warm = none): launches start cold",
                         "`xitui config set server.warm all` and restart the server for faster launches")]
    for engine, why in (warm.get("failed") or {}).items():
        found.append(Finding("warning", f"the warm worker could not import {engine}: {why}",
                             f"launches of {engine} models import it themselves and will say what fails"))
    return found


def check_registrations() -> list[Finding]:
    """Persisted specs: do they validate with today's rules, are their files there, are GGUFs GGUF."""
    from xitui.core.config import home_dir
    from xitui.core.errors import SpecError, XituiError
    from xitui.core.model_files.inspect.gguf_header import read_header
    from xitui.core.specs.spec import local_path, parse_spec

    found: list[Finding] = []
    for kind, folder in (("LLM", "llm"), ("embedding", "embedding"), ("rerank", "rerank")):
        for path in sorted((home_dir() / "model" / folder).glob("*.json")):
            try:
                spec = parse_spec(kind, path.read_bytes())
            except SpecError as exc:
                found.append(Finding("error", f"{path.name} would not validate: {exc}", f"fix or remove {path}"))
                continue
            for entry in spec.model_specs:
                uri = getattr(entry, "model_uri", None)
                if not uri:
                    continue
                where = Path(local_path(uri))
                template = getattr(entry, "model_file_name_template", None)
                if template and where.is_dir():
                    where = where / template.format(quantization=entry.quantization)
                label = f"{kind} {spec.model_name}"
                if not where.exists():
                    found.append(Finding("error", f"{label}: {where} is missing",
                                         "put the files back, or unregister it and register the new place"))
                elif not os.access(where, os.R_OK):
                    found.append(Finding("error", f"{label}: {where} is not readable", "fix its permissions"))
                elif entry.model_format == "ggufv2" and where.is_file():
                    try:
                        read_header(where)
                    except XituiError as exc:
                        found.append(Finding("error", f"{label}: {exc}", "download the GGUF file again"))
    return found or [Finding("ok", "persisted registrations validate and their files are there")]


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def check_engines(gpu_count: int) -> list[Finding]:
    found: list[Finding] = []
    try:
        import llama_cpp
    except ImportError:
        return [Finding("warning", "llama-cpp-python is not installed: GGUF models cannot launch",
                        "scripts/install llamacpp")]
    info = llama_cpp.llama_print_system_info().decode(errors="replace")
    built = {part.split("=")[0].strip().lower(): part.split("=")[-1].strip() == "1"
             for part in info.replace("CPU :", "|").split("|") if "=" in part}
    flags = _cpu_flags()
    missing = [name.upper() for name, flag in (("avx2", "avx2"), ("fma", "fma"), ("f16c", "f16c"),
                                               ("avx512", "avx512f"))
               if flag in flags and built.get(name) is False]
    if missing:
        found.append(Finding("warning", f"llama.cpp is built without {', '.join(missing)}, which this CPU has",
                             "rebuild it: pip uninstall llama-cpp-python, then scripts/install"))
    if gpu_count and not llama_cpp.llama_supports_gpu_offload():
        found.append(Finding("warning", "llama.cpp cannot offload to the GPU this machine has",
                             "rebuild it with CMAKE_ARGS=-DGGML_CUDA=on scripts/install"))
    if gpu_count:
        try:
            import torch

            if not torch.cuda.is_available():
                found.append(Finding("warning", "torch has no CUDA although this machine has a GPU",
                                     "install a CUDA build of torch"))
        except ImportError:
            pass
    using = "llama.cpp uses this CPU's instruction sets" + (" and the GPU" if gpu_count else "")
    return found or [Finding("ok", using)]


def check_hf_cache() -> list[Finding]:
    from xitui.core.model_files.download import cache_dir

    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return [Finding("error", f"the download cache {folder} is not writable ({exc.strerror})",
                        "point HF_HUB_CACHE (or HF_HOME) at a writable folder")]
    return [Finding("ok", f"the download cache {folder} is writable")]


def doctor(
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
    as_json: Json = False,
) -> None:
    """Check settings, server, registrations and their files, llama.cpp and torch builds, the download cache."""
    from xitui.core.machine.memory import gpus

    devices, _ = gpus()
    findings = [*check_config(), *check_server(endpoint, api_key), *check_registrations(),
                *check_engines(len(devices)), *check_hf_cache()]
    if as_json:
        output.print_json([asdict(f) for f in findings])
    else:
        for finding in findings:
            print(safe(finding.line()))  # findings quote the server's errors
    if any(f.level == "error" for f in findings):
        raise typer.Exit(1)

