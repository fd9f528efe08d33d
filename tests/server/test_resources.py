"""GPU memory through NVML. No GPU exists here, so NVML itself is the one thing replaced (a fake pynvml
module with two devices); everything above it (the route's shape, the numbers) is the real code."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from xitui.server import resources


def fake_pynvml(devices: list[dict[str, Any]]) -> types.ModuleType:
    mod = types.ModuleType("pynvml")

    class NVMLError(Exception):
        pass

    state = {"initialised": 0}

    def init() -> None:
        state["initialised"] += 1

    def shutdown() -> None:
        state["initialised"] -= 1

    mod.NVMLError = NVMLError
    mod.nvmlInit = init
    mod.nvmlShutdown = shutdown
    mod.nvmlDeviceGetCount = lambda: len(devices)
    mod.nvmlDeviceGetHandleByIndex = lambda i: devices[i]
    mod.nvmlDeviceGetMemoryInfo = lambda h: types.SimpleNamespace(total=h["total"], used=h["used"],
                                                                 free=h["total"] - h["used"])
    mod.nvmlDeviceGetName = lambda h: h["name"]
    mod.nvmlDeviceGetUtilizationRates = lambda h: types.SimpleNamespace(gpu=h["util"])
    mod.state = state
    return mod


def test_gpu_memory_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml([
        {"name": b"NVIDIA H100 80GB HBM3", "total": 80 * 2**30, "used": 12 * 2**30, "util": 37},
        {"name": "NVIDIA H100 80GB HBM3", "total": 80 * 2**30, "used": 0, "util": 0},
    ])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    snap = resources.snapshot()
    assert snap["gpu_note"] is None
    first, second = snap["gpus"]
    assert first == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total": 80 * 2**30,
                     "memory_used": 12 * 2**30, "memory_free": 68 * 2**30, "utilization": 37}
    assert second["index"] == 1 and second["memory_free"] == 80 * 2**30
    assert fake.state["initialised"] == 0  # NVML is shut down again after each reading


def test_no_driver_is_an_answer_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_pynvml([])

    def no_driver() -> None:
        raise fake.NVMLError("NVML Shared Library Not Found")

    fake.nvmlInit = no_driver
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    gpus, note = resources.gpus()
    assert gpus == [] and "no NVIDIA driver" in note
