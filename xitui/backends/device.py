"""Device and thread choices shared by the torch backends."""

from __future__ import annotations

import os


def best_device() -> str:
    """CUDA when present (XITUI_DEVICE overrides), else CPU."""
    import torch

    forced = os.environ.get("XITUI_DEVICE")
    if forced:
        return forced
    return "cuda" if torch.cuda.is_available() else "cpu"


def physical_cores() -> int:
    """Physical cores: llama.cpp and torch run slower on hyper-threads than on the cores alone."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
    except Exception:  # psutil cannot read the topology in some sandboxes
        count = None
    return max(1, count or os.cpu_count() or 1)


def default_threads() -> int:
    """Threads for a model: XITUI_THREADS, else the physical cores."""
    return int(os.environ.get("XITUI_THREADS") or physical_cores())


def set_torch_threads() -> None:
    import torch

    torch.set_num_threads(default_threads())
