"""Reading the files a spec names, bounded: regular files only, and small files only as large as they can be.

A spec may name any path (`model_uri`), so the files under it are the spec's, not the model's: a FIFO would
park a plain `open()` until somebody writes to it, `/dev/zero` would read until memory runs out, a
`config.json` of gigabytes would be parsed whole. Every file is opened without blocking (O_NONBLOCK) and
checked on its open descriptor (no race between a check and the open); symlinks are followed, as model
caches are made of them, and the file they reach must be regular too.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from xitui.core.errors import XituiError

#: Largest JSON side file read from a model folder (config.json, tokenizer_config.json...: kilobytes, or a
#: few MiB for tokenizer configs that embed their vocabulary).
MAX_JSON = 16 * 1024 * 1024
#: Largest chat template file read beside a model (the largest real ones are tens of KiB).
MAX_TEXT = 1024 * 1024


class UnreadableFileError(XituiError):
    """A file a spec names is not a regular file, or is larger than such a file can be."""


def open_regular(path: str | Path) -> int:
    """A read-only descriptor of the regular file at `path` (symlinks followed); never blocks on a FIFO or
    device. Raises OSError when it cannot be opened, UnreadableFileError when it is not a regular file."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnreadableFileError(f"{Path(path).name}: not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_small(path: str | Path, limit: int) -> bytes:
    """The whole of a small regular file; UnreadableFileError when it is larger than `limit` bytes."""
    fd = open_regular(path)
    try:
        if os.fstat(fd).st_size > limit:
            raise UnreadableFileError(f"{Path(path).name}: larger than {limit // 1024} KiB, too large for what "
                                      "it should hold")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while being read
            raise UnreadableFileError(f"{Path(path).name}: larger than {limit // 1024} KiB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_json_value(path: str | Path, limit: int = MAX_JSON) -> Any:
    """A small JSON file's value; None when it is missing, unreadable, not a regular file, too large or not
    JSON (callers treat all of these as "no such facts")."""
    try:
        return json.loads(read_small(path, limit))
    except (OSError, ValueError, RecursionError, XituiError):
        return None


def read_json(path: str | Path, limit: int = MAX_JSON) -> dict[str, Any] | None:
    """A small JSON object file, or None as `read_json_value` says (and when it is not an object)."""
    data = read_json_value(path, limit)
    return data if isinstance(data, dict) else None


def read_head(path: str | Path, size: int) -> bytes | None:
    """At most the first `size` bytes of a regular file; None when it cannot be read."""
    try:
        fd = open_regular(path)
    except (OSError, XituiError):
        return None
    try:
        return os.read(fd, size)
    except OSError:
        return None
    finally:
        os.close(fd)


def read_text(path: str | Path, limit: int = MAX_TEXT) -> str | None:
    """A small text file (UTF-8), or None as `read_json` says."""
    try:
        return read_small(path, limit).decode("utf-8")
    except (OSError, ValueError, XituiError):
        return None
