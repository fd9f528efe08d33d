"""This machine's resources: GPU memory per device (NVML) and system memory (psutil); for the dashboard, the
launch estimate and `xitui doctor`. No model library here."""

from __future__ import annotations

import contextlib
import os
from typing import Any


def gpus(owners: dict[int, str] | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """One entry per NVIDIA GPU, and why there are none when NVML cannot answer. Each lists the processes
    holding its memory; `owners` (pid -> model uid) names the ones that are model workers."""
    try:
        import pynvml
    except ImportError:
        return [], "nvidia-ml-py is not installed"
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return [], f"no NVIDIA driver ({exc})"
    found = []
    try:
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            try:
                util = pynvml.nvmlDeviceGetUtilizationRates(handle).gpu
            except pynvml.NVMLError:
                util = None
            found.append({
                "index": index,
                "name": name.decode() if isinstance(name, bytes) else name,
                "memory_total": int(mem.total),
                "memory_used": int(mem.used),
                "memory_free": int(mem.free),
                "utilization": util,
                "processes": _processes(pynvml, handle, owners or {}),
            })
    except pynvml.NVMLError as exc:
        return found, f"NVML error: {exc}"
    finally:
        with contextlib.suppress(pynvml.NVMLError):
            pynvml.nvmlShutdown()
    return found, None


def _processes(pynvml: Any, handle: Any, owners: dict[int, str]) -> list[dict[str, Any]]:
    """Compute processes on a GPU with their memory (None where the driver hides it) and model uid."""
    try:
        running = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except (pynvml.NVMLError, AttributeError):
        return []
    return [{"pid": int(p.pid), "memory_used": int(p.usedGpuMemory) if p.usedGpuMemory else None,
             "model_uid": owners.get(int(p.pid))} for p in running]


def physical_cores() -> int:
    """Physical cores: llama.cpp and torch run slower on hyper-threads than on the cores alone."""
    try:
        import psutil

        count = psutil.cpu_count(logical=False)
    except Exception:  # psutil cannot read the topology in some sandboxes
        count = None
    return max(1, count or os.cpu_count() or 1)


def system_memory() -> dict[str, int]:
    import psutil

    vm = psutil.virtual_memory()
    return {"total": int(vm.total), "available": int(vm.available), "used": int(vm.total - vm.available)}


def snapshot(owners: dict[int, str] | None = None) -> dict[str, Any]:
    import psutil

    devices, reason = gpus(owners)
    return {
        "gpus": devices,
        "gpu_note": reason,
        "memory": system_memory(),
        "cpu_count": psutil.cpu_count(),
        "cpu_percent": psutil.cpu_percent(interval=None),
    }
