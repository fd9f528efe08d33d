"""Will a launch fit: the estimate (estimate.py) against free RAM and free GPU memory, for the server's
launches and the wizard's review.

Whether an engine puts the model on the GPU is asked of the engine itself, once, in a child process (the
server imports no model library): `llama_supports_gpu_offload()` for llama.cpp, `torch.cuda.is_available()`
for the torch engines. On a machine without an NVIDIA GPU nothing is asked.
"""

from __future__ import annotations

import os
import subprocess
import threading
from typing import TYPE_CHECKING

from xitui.core.machine import memory as machine
from xitui.core.machine.estimate import Estimate, Fit, check_fit, choose_slots, estimate, with_slots
from xitui.core.machine.python_command import python

if TYPE_CHECKING:  # annotations only: the CLI does not import the wire's types to start
    from xitui import wire

_PROBES = {
    "llama.cpp": "import llama_cpp; print(bool(llama_cpp.llama_supports_gpu_offload()))",
    "transformers": "import torch; print(torch.cuda.is_available())",
}
_usable: dict[str, bool] = {}
_probing = threading.Lock()


def _engine_uses_gpu(engine: str) -> bool:
    forced = os.environ.get("XITUI_DEVICE")
    if forced:
        return forced.startswith("cuda")
    key = "llama.cpp" if engine == "llama.cpp" else "transformers"
    with _probing:  # one probe per engine, even when a launch comes while `prime` asks
        if key not in _usable:
            try:
                done = subprocess.run(python("-c", _PROBES[key]), capture_output=True, text=True,
                                      timeout=60)
                _usable[key] = done.stdout.strip() == "True"
            except (OSError, subprocess.TimeoutExpired):
                _usable[key] = False
    return _usable[key]


def prime() -> None:
    """Ask the engines now (the server does at start, in the background) rather than at the first launch:
    on a GPU machine a probe imports torch, seconds the first launch would otherwise wait for."""
    if machine.gpus()[0]:
        for engine in _PROBES:
            _engine_uses_gpu(engine)


def on_gpu(settings: wire.Settings) -> bool:
    """Whether the launch's engine will put the model on a GPU (blocking: NVML, maybe an engine probe)."""
    if settings["engine"] == "scripted":  # the test suite's engine: a script, no device
        return False
    gpus, _ = machine.gpus()
    return bool(gpus) and settings.get("n_gpu_layers") != 0 and _engine_uses_gpu(settings["engine"])


def fit_now(est: Estimate, engine: str, reserved_ram: int = 0, reserved_gpu: int = 0) -> Fit:
    """How `est` fits in the memory free now, less what launches still loading will take (`reserved_*`)."""
    free_ram = machine.system_memory()["available"] - reserved_ram
    free_gpu = None
    if est.device == "gpu":
        gpus, _ = machine.gpus()
        # llama.cpp splits layers over every GPU; transformers puts the model on the first one
        free = [g["memory_free"] for g in gpus] or [0]
        free_gpu = (sum(free) if engine == "llama.cpp" else free[0]) - reserved_gpu
    return check_fit(est, max(0, free_ram), None if free_gpu is None else max(0, free_gpu))


def measure(settings: wire.Settings, replicas: int = 1, reserved_ram: int = 0, reserved_gpu: int = 0
            ) -> tuple[Estimate | None, Fit | None]:
    """The estimate and how it fits now (None, None when the files are not here to read yet). Blocking (file
    headers, NVML, maybe a probe); the server runs `on_gpu`, `estimate` and `fit_now` apart, so that the files'
    reads stay outside its launch lock."""
    est = settle_slots(estimate(settings, gpu=on_gpu(settings), replicas=replicas), settings, reserved_ram,
                       reserved_gpu)
    if est is None:
        return None, None
    return est, fit_now(est, settings["engine"], reserved_ram, reserved_gpu)


def threads_for(settings: wire.Settings, envs: dict[str, str] | None = None) -> int:
    """The threads a worker will run with (its n_threads, XITUI_THREADS, else the physical cores)."""
    given = settings.get("n_threads") or {**os.environ, **(envs or {})}.get("XITUI_THREADS")
    return int(given) if given else machine.physical_cores()


def settle_slots(est: Estimate | None, settings: wire.Settings, reserved_ram: int = 0, reserved_gpu: int = 0,
                 envs: dict[str, str] | None = None) -> Estimate | None:
    """A llama.cpp or transformers launch that names no n_parallel gets the slot count chosen for this machine
    (estimate.choose_slots), written into `settings` and the estimate."""
    if settings.get("engine") not in ("llama.cpp", "transformers") or settings.get("n_parallel"):
        return est
    cores = threads_for(settings, envs)
    if est is None:  # the files are not here yet: the device and the context decide
        settings["n_parallel"] = choose_slots(settings.get("context_length"), cores)[0]
        return None
    fit = fit_now(est, settings["engine"], reserved_ram, reserved_gpu)
    free = fit.free_gpu if est.device == "gpu" and fit.free_gpu is not None else fit.free_ram
    need = est.gpu if est.device == "gpu" else est.ram
    slots, reason = choose_slots(est.context_length, cores, est.device, free - need, est.vocab * 4)
    settings["n_parallel"] = slots
    return with_slots(est, slots, reason)
