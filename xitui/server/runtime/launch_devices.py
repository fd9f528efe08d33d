"""Which devices a launch asks for (`n_gpu`, `gpu_idx`: Xinference's launch fields), checked against this
machine's GPUs and turned into what the worker reads: CUDA_VISIBLE_DEVICES, XITUI_DEVICE, n_gpu_layers. A count
or an index the machine does not have is a one-line 400 (it was accepted and ignored once)."""

from __future__ import annotations

from typing import Any

from xitui.core.errors import LaunchError
from xitui.core.machine.memory import gpus


class MissingDeviceError(LaunchError):
    """A launch names GPUs this machine does not have: the request is fine, the machine cannot serve it."""

    status_code = 409


def device_choice(request: dict[str, Any], engine: str) -> tuple[dict[str, str], dict[str, Any]]:
    """(environment variables, engine options) for the devices a launch request names. `n_gpu`: "auto" (the
    default: the GPUs if any), null or 0 (this CPU only), or a count; `gpu_idx`: an index or a list of them."""
    n_gpu = request.get("n_gpu", "auto")
    idx = request.get("gpu_idx")
    if idx == []:
        idx = None  # (no index named: as if left out)
    if n_gpu is None or n_gpu == 0:
        if idx is not None:
            raise LaunchError("gpu_idx: names GPUs for a launch whose n_gpu says CPU only; leave one out")
        options = {"n_gpu_layers": 0} if engine == "llama.cpp" and request.get("n_gpu_layers") is None else {}
        return {"XITUI_DEVICE": "cpu"}, options
    if n_gpu == "auto" and idx is None:
        return {}, {}
    found, why = gpus()
    count = len(found)
    indexes = [idx] if isinstance(idx, int) else list(idx or [])
    if indexes:
        missing = sorted({i for i in indexes if i >= count})
        if missing:
            raise MissingDeviceError(f"gpu_idx: no GPU {', '.join(map(str, missing))} here: {_none_such(count, why)}")
        if n_gpu != "auto" and n_gpu != len(indexes):
            raise LaunchError(f"gpu_idx: names {len(indexes)} GPUs where n_gpu asks for {n_gpu}")
    else:
        if n_gpu > count:
            raise MissingDeviceError(f"n_gpu: {n_gpu} GPU{'s' if n_gpu != 1 else ''} asked, {_none_such(count, why)}; "
                              "leave n_gpu out to use what there is, or set it to null for the CPU")
        indexes = list(range(n_gpu))
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, dict.fromkeys(indexes)))}, {}


def _none_such(count: int, why: str | None) -> str:
    if count == 0:
        return f"this machine has no GPU ({why})" if why else "this machine has no GPU"
    return f"this machine has {count} GPU{'s' if count != 1 else ''} (indexes 0-{count - 1})"
