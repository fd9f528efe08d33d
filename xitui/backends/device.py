"""Device and thread choices shared by the torch backends."""

from __future__ import annotations

import os

from xitui.core.machine.memory import physical_cores


def best_device() -> str:
    """CUDA when present (XITUI_DEVICE overrides), else CPU."""
    import torch

    forced = os.environ.get("XITUI_DEVICE")
    if forced:
        return forced
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_threads() -> int:
    """Threads for a model: XITUI_THREADS, else the physical cores."""
    return int(os.environ.get("XITUI_THREADS") or physical_cores())


__all__ = ["best_device", "default_threads", "physical_cores", "set_torch_threads"]


def set_torch_threads() -> None:
    import torch

    torch.set_num_threads(default_threads())
