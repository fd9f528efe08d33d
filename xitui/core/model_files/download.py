"""Model files from the Hugging Face Hub, by `model_id`, with progress (huggingface_hub does the work).

Cache: the standard Hugging Face cache (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub), so
files already fetched by transformers, huggingface-cli or another tool are used as they are, and what xitui
fetches serves them too. Its layout is the Hub's: partial downloads resume, and a second launch finds the
files without network. `xitui cache list` shows what is there for which registration.
HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE are read by huggingface_hub itself.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xitui.core.errors import LaunchError
from xitui.core.model_files.growth import Growth

#: Weights in pickle formats are never fetched: xitui loads safetensors and GGUF only.
SKIP_PATTERNS = ["*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.msgpack", "*.onnx", "*.ot", "*.tflite",
                 "*.gguf", "*.pkl", "onnx/*", "openvino/*", "*.mlmodel", "coreml/*"]

Progress = Callable[[float, str], None]


def cache_dir() -> Path:
    """huggingface_hub's own rule, read when called (its `constants` are fixed when it is imported)."""
    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return Path(env).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "huggingface" / "hub"


def _to_download(model_id: str, revision: str | None, patterns: dict[str, Any]) -> int:
    """Bytes a snapshot would fetch (0 when all is cached or the Hub cannot be asked)."""
    from huggingface_hub import snapshot_download

    try:
        infos = snapshot_download(model_id, revision=revision, cache_dir=str(cache_dir()), dry_run=True, **patterns)
    except Exception:  # offline, unknown repo...: the real call below says what went wrong
        return 0
    return sum(info.file_size or 0 for info in infos if info.will_download)


def download(
    model_id: str,
    progress: Progress,
    *,
    file_name: str | None = None,
    revision: str | None = None,
    hub: str = "huggingface",
) -> str:
    """Fetch a repository snapshot (or one file of it); returns the directory (or the file's path)."""
    if hub == "modelscope":
        return _from_modelscope(model_id, progress, file_name, revision)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    progress(0.05, f"fetching {model_id} from {endpoint}")
    patterns: dict[str, Any] = {"allow_patterns": [file_name]} if file_name else {"ignore_patterns": SKIP_PATTERNS}
    total = 0 if _offline() else _to_download(model_id, revision, patterns)
    blobs = cache_dir() / f"models--{model_id.replace('/', '--')}" / "blobs"
    def blob_bytes() -> int:  # (huggingface_hub's own progress bars differ between its versions)
        return sum(p.stat().st_size for p in blobs.glob("*") if p.is_file())

    already = blob_bytes()
    watcher = Growth(lambda: blob_bytes() - already, total, "downloading", progress) if total \
        else contextlib.nullcontext()
    try:
        with watcher:
            folder = snapshot_download(model_id, revision=revision, cache_dir=str(cache_dir()), **patterns)
    except GatedRepoError:
        raise LaunchError(f"{model_id} is gated on the Hub: accept its licence there and set HF_TOKEN") from None
    except RepositoryNotFoundError:
        raise LaunchError(f"{model_id} was not found on {endpoint} (private? set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise LaunchError(f"{model_id} has no revision {revision!r} on {endpoint}") from None
    # LocalEntryNotFoundError is an EntryNotFoundError: it must be caught first
    except (LocalEntryNotFoundError, OfflineModeIsEnabled):
        why = "HF_HUB_OFFLINE is set" if _offline() else f"{endpoint} cannot be reached"
        raise LaunchError(f"cannot download {model_id}: {why}, and it is not in the cache ({cache_dir()})") from None
    except EntryNotFoundError:
        raise LaunchError(f"{model_id} has no file {file_name!r} on {endpoint}") from None
    except HfHubHTTPError as exc:
        raise LaunchError(f"cannot download {model_id}: {' '.join(str(exc).split())[:200]}") from None
    except OSError as exc:
        raise LaunchError(f"cannot download {model_id}: {exc.strerror or exc}") from None
    path = Path(folder)
    if file_name:
        path = path / file_name
        if not path.is_file():
            raise LaunchError(f"{model_id} has no file {file_name!r}")
    progress(0.9, "downloaded")
    return str(path)


def _from_modelscope(model_id: str, progress: Progress, file_name: str | None, revision: str | None) -> str:
    """The same through the modelscope package (its own cache, MODELSCOPE_CACHE; its own endpoint,
    MODELSCOPE_DOMAIN): a spec whose model_hub is modelscope."""
    try:
        from modelscope import snapshot_download
    except ImportError:
        raise LaunchError("model_hub 'modelscope': the modelscope package is not installed here "
                          "(pip install modelscope)") from None
    progress(0.05, f"fetching {model_id} from ModelScope")
    patterns: dict[str, Any] = {"allow_patterns": [file_name]} if file_name else {"ignore_patterns": SKIP_PATTERNS}
    try:
        folder = snapshot_download(model_id, revision=revision, **patterns)
    except Exception as exc:  # modelscope's errors have no common base: each is one line here
        raise LaunchError(f"cannot download {model_id} from ModelScope: {' '.join(str(exc).split())[:200]}") from None
    path = Path(folder) / file_name if file_name else Path(folder)
    if not path.exists():
        raise LaunchError(f"{model_id} has no file {file_name!r} on ModelScope")
    progress(0.9, "downloaded")
    return str(path)


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
