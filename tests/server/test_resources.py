"""GPU memory through NVML. No GPU exists here, so NVML itself is the one thing replaced (a fake pynvml
module with two devices); everything above it (the route's shape, the numbers) is the real code."""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from xitui.core.machine import memory as resources


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
    mod.nvmlDeviceGetComputeRunningProcesses = lambda h: [types.SimpleNamespace(pid=pid, usedGpuMemory=used)
                                                          for pid, used in h.get("procs", [])]
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
                     "memory_used": 12 * 2**30, "memory_free": 68 * 2**30, "utilization": 37, "processes": []}
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


def test_gpu_memory_by_model_joins_nvml_processes_with_worker_pids(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVML's per-process memory, named by the workers' pids, is what the dashboard shows per model."""
    from xitui.tui.data import gpu_memory_by_model, model_row

    fake = fake_pynvml([
        {"name": "GPU A", "total": 80 * 2**30, "used": 30 * 2**30, "util": 50,
         "procs": [(4242, 6 * 2**30), (999, 20 * 2**30), (4343, None)]},
        {"name": "GPU B", "total": 80 * 2**30, "used": 4 * 2**30, "util": 5, "procs": [(4242, 2 * 2**30)]},
    ])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    snap = resources.snapshot({4242: "big-model", 4343: "hidden"})
    first, second = snap["gpus"]
    assert first["processes"] == [{"pid": 4242, "memory_used": 6 * 2**30, "model_uid": "big-model"},
                                  {"pid": 999, "memory_used": 20 * 2**30, "model_uid": None},
                                  {"pid": 4343, "memory_used": None, "model_uid": "hidden"}]
    held = gpu_memory_by_model(snap)
    assert held == {"big-model": 8 * 2**30}  # over both GPUs; a hidden amount is not guessed
    row = model_row("big-model", {"model_type": "LLM", "state": "ready", "metrics": {}}, held, 0.0)
    assert row[6] == "8.0 GiB"
