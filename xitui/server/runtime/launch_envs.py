"""Environment variables a launch may give its worker (`envs`): an allow-list.

A worker is `python -m xitui.worker` with the launch's variables added, so a variable that changes what code
loads would run anybody's code as the server's user: `PYTHONPATH` with a `sitecustomize.py`, `LD_PRELOAD`,
`HOME` (Python's per-user site-packages sit under it). What a model may need is short: which devices,
how many threads, where Hugging Face caches and downloads, and xitui's own worker settings. The config's
`server.allowed_envs` adds names (never one of the refused ones); restored launches pass the same check.
"""

from __future__ import annotations

import re

from xitui.core.errors import LaunchError

ALLOWED = frozenset({
    # devices
    "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES",
    "GPU_DEVICE_ORDINAL", "PYTORCH_CUDA_ALLOC_CONF",
    # threads
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "TOKENIZERS_PARALLELISM",
    # Hugging Face downloads and caches
    "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_ENDPOINT", "HF_TOKEN", "HF_HUB_OFFLINE",
    "HF_HUB_DISABLE_TELEMETRY", "HF_HUB_DOWNLOAD_TIMEOUT", "HF_HUB_ETAG_TIMEOUT", "TRANSFORMERS_OFFLINE",
    "SENTENCE_TRANSFORMERS_HOME",
    # xitui's worker settings
    "XITUI_THREADS", "XITUI_DEVICE", "XITUI_BATCH_GAP_MS", "XITUI_BATCH_WAIT_MS", "XITUI_MAX_BATCH",
})

#: Never passed, whatever the config says: they decide which code a process loads.
_REFUSED = re.compile(r"^(PYTHON.*|LD_.*|DYLD_.*|PATH|HOME|USERPROFILE|BASH_ENV|ENV|IFS|PERL5?LIB|PERL5OPT|"
                      r"RUBYLIB|RUBYOPT|NODE_OPTIONS|GCONV_PATH|MALLOC_.*|GLIBC_TUNABLES|SHELL)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
#: Longest value (a token or a device list is short; a path is at most 4096 bytes on Linux).
MAX_VALUE = 4096
MAX_COUNT = 64
#: xitui's own numeric settings, read as numbers by the server (the estimate's threads) and the worker at
#: start: a value that is not one is the launch's error (it was a 500 from the estimate, a dead worker).
NUMBERS = {"XITUI_THREADS": (int, 1, 4096), "XITUI_MAX_BATCH": (int, 1, 4096),
           "XITUI_BATCH_GAP_MS": (float, 0, 60_000), "XITUI_BATCH_WAIT_MS": (float, 0, 60_000)}


def refused(name: str) -> bool:
    """Whether `name` is never passed to a worker, config or not."""
    return bool(_REFUSED.match(name))


def check_envs(envs: object, extra: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """`envs` of a launch, checked: an object of at most 64 allowed names to strings without NUL bytes.
    `extra`: names the config allows besides ALLOWED. Raises LaunchError naming what is refused."""
    if envs is None:
        return {}
    if not isinstance(envs, dict):
        raise LaunchError("envs: must be an object of names to strings")
    if len(envs) > MAX_COUNT:
        raise LaunchError(f"envs: at most {MAX_COUNT} variables")
    allowed = ALLOWED | {name for name in extra if not refused(name)}
    bad = sorted(str(name)[:64] for name in envs if not isinstance(name, str) or name not in allowed)
    if bad:
        shown = ", ".join(repr(name) for name in bad[:5])
        raise LaunchError(
            f"envs: {shown} may not be set for a model (variables that decide which code loads never are; "
            "allowed: devices such as CUDA_VISIBLE_DEVICES, threads such as OMP_NUM_THREADS, Hugging Face's HF_*, "
            "XITUI_THREADS and XITUI_DEVICE; add others with `xitui config set server.allowed_envs NAME`)")
    checked = {}
    for name, value in envs.items():
        if not isinstance(value, str) or "\0" in value or len(value) > MAX_VALUE:
            raise LaunchError(f"envs.{name}: must be a string of at most {MAX_VALUE} characters, without NUL")
        if not _NAME.fullmatch(name):
            raise LaunchError(f"envs: {name!r} is not a variable name")
        if name in NUMBERS:
            kind, low, high = NUMBERS[name]
            try:
                number = kind(value)
            except ValueError:
                number = None
            if number is None or not low <= number <= high:  # (NaN compares False too)
                raise LaunchError(f"envs.{name}: must be {'a whole number' if kind is int else 'a number'} "
                                  f"from {low} to {high}")
        checked[name] = value
    return checked
