"""`pull` (a registration's files into the Hugging Face cache, launching nothing) and `cache list|remove`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from xitui.cli.common import ApiKey, Endpoint, ModelType, connect
from xitui.core.errors import XituiError
from xitui.core.specs.names import MODEL_TYPES
from xitui.core.units import human_bytes
from xitui.terminal import output

cache_app = typer.Typer(help="The Hugging Face cache and the PyTorch models converted to GGUF: what is there for "
                        "which registration; free its space.",
                        no_args_is_help=True)

ModelName = Annotated[str, typer.Argument(help="A registered model name.", show_default=False)]


def pull(
    model_name: ModelName,
    model_type: ModelType = "LLM",
    model_format: Annotated[str | None, typer.Option("--model-format", "-f",
                                                     help="Which spec (ggufv2, pytorch...).")] = None,
    size: Annotated[str | None, typer.Option("--size-in-billions", "-s", help="Which size.")] = None,
    quantization: Annotated[str | None, typer.Option("--quantization", "-q", help="Which quantization.")] = None,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Download the files a launch of this registration would use, launching nothing (a later launch finds
    them with the network off); Hugging Face's progress shows each file with its speed and time left."""
    from xitui.core.model_files.download import cache_dir, download

    request = {"model_name": model_name, "model_format": model_format, "model_size_in_billions": size,
               "quantization": quantization}
    plan = _plan(connect(endpoint, api_key), model_type, model_name, request)
    if plan.model_path:
        output.info(f"{model_name}: its files are on this machine ({plan.model_path}): nothing to pull")
        return
    what = plan.model_id + (f" ({plan.file_name})" if plan.file_name else "")
    output.info(f"pulling {what} into {cache_dir()}")
    path = download(plan.model_id, lambda value, stage: None, file_name=plan.file_name, revision=plan.model_revision,
                    hub=plan.model_hub)
    output.info(f"{model_name}: ready to launch from {path}")


@cache_app.command("list")
def cache_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """What the Hugging Face cache holds (each repository, its size and the registrations that use it), and the
    PyTorch models converted to GGUF for llama.cpp."""
    from xitui.core.config import home_dir
    from xitui.core.model_files.conversion import CACHE_DIR, listed
    from xitui.core.model_files.download import cache_dir

    client = connect(endpoint, api_key)
    repos = _cached()
    users = _registrations_by_repo(client)
    rows: list[dict[str, Any]] = [
        {"cache": "hub", "repo_id": repo.repo_id, "size": repo.size_on_disk, "files": repo.nb_files,
         "registrations": sorted(users.get(repo.repo_id.lower(), []))} for repo in repos]
    by_folder = _registrations_by_folder(client)
    converted: list[dict[str, Any]] = [{"cache": "converted", **facts,
                  "registrations": sorted(by_folder.get(str(facts.get("source")), []))}
                 for facts in listed(home_dir())]
    if as_json:
        output.print_json(rows + converted)
        return
    output.table(["repository", "size", "files", "registrations"],
                 [[r["repo_id"], human_bytes(r["size"]), r["files"], ", ".join(r["registrations"]) or "-"]
                  for r in rows], title=f"Hugging Face cache ({cache_dir()})")
    if converted:
        from pathlib import Path

        output.table(["file", "type", "size", "converted from", "registrations"],
                     [[Path(str(c["file"])).name, c.get("type", "?"), human_bytes(int(c["size"])), c.get("source", "?"),
                       ", ".join(c["registrations"]) or "-"] for c in converted],
                     title=f"PyTorch models converted to GGUF ({home_dir() / CACHE_DIR})")


@cache_app.command("remove")
def cache_remove(
    model_name: ModelName,
    model_type: ModelType = "LLM",
    endpoint: Endpoint = None,
    api_key: ApiKey = None,
) -> None:
    """Delete a registration's downloaded files from the cache (the registration stays; a launch downloads
    them again)."""
    from pathlib import Path

    from xitui.core.config import home_dir
    from xitui.core.model_files.conversion import listed

    client = connect(endpoint, api_key)
    registration = client.get_model_registration(model_type, model_name)
    wanted = {repo.lower() for repo in _repos_of(registration)}
    found = [repo for repo in _cached() if repo.repo_id.lower() in wanted]
    folders = _folders_of(registration)
    converted = [c for c in listed(home_dir()) if str(c.get("source")) in folders]
    if not found and not converted:
        raise XituiError(f"nothing of {model_name} is in the cache (its files: {', '.join(sorted(wanted)) or 'local'})")
    for item in converted:  # a launch converts again
        path = Path(str(item["file"]))
        path.unlink(missing_ok=True)
        path.with_suffix(".json").unlink(missing_ok=True)
        path.with_name(path.name + ".lock").unlink(missing_ok=True)
        output.info(f"removed {path.name} (GGUF {item.get('type', '?')}): {human_bytes(int(item['size']))} freed")
    if not found:
        return
    from huggingface_hub import scan_cache_dir

    from xitui.core.model_files.download import cache_dir

    strategy = scan_cache_dir(cache_dir()).delete_revisions(
        *[revision.commit_hash for repo in found for revision in repo.revisions])
    strategy.execute()
    names = ", ".join(repo.repo_id for repo in found)
    output.info(f"removed {names}: {human_bytes(strategy.expected_freed_size)} freed")


def _plan(client: Any, model_type: str, model_name: str, request: dict[str, Any]) -> Any:
    from xitui.core.specs.spec import parse_spec
    from xitui.server.runtime.launch_plan import plan_for

    registration = client.get_model_registration(model_type, model_name)
    return plan_for(parse_spec(model_type, registration, builtin=bool(registration.get("is_builtin"))), request)


def _cached() -> list[Any]:
    """The cache's model repositories (none when there is no cache yet)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    from xitui.core.model_files.download import cache_dir

    try:
        info = scan_cache_dir(cache_dir())
    except CacheNotFound:
        return []
    return sorted((repo for repo in info.repos if repo.repo_type == "model"), key=lambda r: r.repo_id.lower())


def _repos_of(registration: dict[str, Any]) -> set[str]:
    """The Hub repositories a registration's specs download from."""
    specs = registration.get("model_specs") or [registration]
    return {spec["model_id"] for spec in specs if isinstance(spec, dict) and spec.get("model_id")
            and not spec.get("model_uri")}


def _folders_of(registration: dict[str, Any]) -> set[str]:
    """The local PyTorch folders a registration's specs name (what converted files were made from)."""
    from pathlib import Path

    from xitui.core.specs.spec import local_path

    specs = registration.get("model_specs") or []
    return {str(Path(local_path(spec["model_uri"])).resolve()) for spec in specs
            if isinstance(spec, dict) and spec.get("model_uri") and spec.get("model_format") == "pytorch"}


def _registrations_by_folder(client: Any) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for registration in client.list_model_registrations("LLM", detailed=True):
        for folder in _folders_of(registration):
            users.setdefault(folder, []).append(registration["model_name"])
    return users


def _registrations_by_repo(client: Any) -> dict[str, list[str]]:
    users: dict[str, list[str]] = {}
    for kind in MODEL_TYPES:
        for registration in client.list_model_registrations(kind, detailed=True):
            for repo in _repos_of(registration):
                users.setdefault(repo.lower(), []).append(registration["model_name"])
    return users
