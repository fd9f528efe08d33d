"""Read a GGUF file's header (metadata and tensor shapes) without touching its weights.

Hand-written on purpose: the `gguf` package's GGUFReader turns every metadata array into numpy arrays,
the 262,144-entry token list included, and takes 9.6 s on the bundled 253 MB file; this reader walks the
header through mmap, keeps small values, skips large arrays, and takes tens of milliseconds. The format is
the GGUF v2/v3 layout (ggml's docs/gguf.md); quantization names come from llama.cpp's `llama_ftype`, checked
against the `gguf` package's `LlamaFileType` in the tests.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass, field
from math import prod
from pathlib import Path
from typing import Any

from xitui.core.errors import XituiError
from xitui.core.model_files.bounded_reads import UnreadableFileError, open_regular

#: GGUF metadata value types (gguf.GGUFValueType).
_STRING, _ARRAY = 8, 9
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
#: Arrays longer than this are skipped (token lists, scores, merges); their length is kept.
_SMALL_ARRAY = 64
#: Metadata entries, tensors and strings stepped over, at most: a header announcing more is refused rather
#: than walked (a sparse file of zeros reads as endless empty strings). Real files: a few hundred entries,
#: some thousands of tensors, token lists and merges of up to about a million strings each.
_MAX_ITEMS = 16_000_000

#: llama.cpp's llama_ftype, as the quantization name users write in file names (gguf.LlamaFileType).
FILE_TYPES: dict[int, str] = {
    0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 7: "Q8_0", 8: "Q5_0", 9: "Q5_1", 10: "Q2_K", 11: "Q3_K_S",
    12: "Q3_K_M", 13: "Q3_K_L", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K",
    19: "IQ2_XXS", 20: "IQ2_XS", 21: "Q2_K_S", 22: "IQ3_XS", 23: "IQ3_XXS", 24: "IQ1_S", 25: "IQ4_NL",
    26: "IQ3_S", 27: "IQ3_M", 28: "IQ2_S", 29: "IQ2_M", 30: "IQ4_XS", 31: "IQ1_M", 32: "BF16", 36: "TQ1_0",
    37: "TQ2_0", 38: "MXFP4_MOE",
}


class GGUFError(XituiError):
    """The file is not a GGUF file, or its header is cut short."""


@dataclass
class ArrayInfo:
    """A metadata array too long to keep: its element type, length and where its data starts."""

    item_type: int
    length: int
    offset: int


@dataclass
class GGUFHeader:
    """What a GGUF file's header says (metadata and tensor shapes), read without loading the weights."""

    path: Path
    version: int
    metadata: dict[str, Any]
    tensor_count: int
    parameter_count: int
    file_size: int
    #: Token texts looked up by id (only the ids asked for: see `token_texts`).
    tokens: dict[int, str] = field(default_factory=dict)

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)

    @property
    def architecture(self) -> str | None:
        return self.metadata.get("general.architecture")

    def arch(self, key: str) -> Any:
        """An architecture-scoped value, e.g. arch('context_length') reads `gemma3.context_length`."""
        return self.metadata.get(f"{self.architecture}.{key}")

    @property
    def quantization(self) -> str | None:
        """The file type as the quantization name (Q4_K_M, F16...)."""
        file_type = self.metadata.get("general.file_type")
        return FILE_TYPES.get(file_type) if isinstance(file_type, int) else None


class _Cursor:
    def __init__(self, buf: mmap.mmap, path: Path):
        self.buf, self.pos, self.path = buf, 0, path
        self.budget = _MAX_ITEMS

    def spend(self, count: int, least_bytes: int) -> None:
        """Account for `count` items of at least `least_bytes` each before stepping over them: refuse counts
        the rest of the file cannot hold, or more items than any real header has."""
        if count * least_bytes > len(self.buf) - self.pos:
            raise GGUFError(f"{self.path.name}: GGUF header is cut short or corrupt: it announces {count} items, "
                            "more than the file holds (a partial download?)")
        self.budget -= count
        if self.budget < 0:
            raise GGUFError(f"{self.path.name}: GGUF header has more than {_MAX_ITEMS} items: not read")

    def unpack(self, fmt: str) -> Any:
        try:
            value = struct.unpack_from(fmt, self.buf, self.pos)[0]
        except struct.error:
            raise GGUFError(f"{self.path.name}: GGUF header is cut short (a partial download?)") from None
        self.pos += struct.calcsize(fmt)
        return value

    def string(self) -> str:
        length = self.unpack("<Q")
        end = self.pos + length
        if end > len(self.buf):
            raise GGUFError(f"{self.path.name}: GGUF header is cut short (a partial download?)")
        text = self.buf[self.pos:end].decode("utf-8", errors="replace")
        self.pos = end
        return text

    def skip_strings(self, count: int) -> None:
        self.spend(count, 8)
        unpack, buf, pos = struct.unpack_from, self.buf, self.pos
        try:
            for _ in range(count):
                pos += 8 + unpack("<Q", buf, pos)[0]
        except struct.error:
            raise GGUFError(f"{self.path.name}: GGUF header is cut short (a partial download?)") from None
        self.pos = pos

    def value(self, kind: int, depth: int = 0) -> Any:
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_type, length = self.unpack("<I"), self.unpack("<Q")
            if length > _SMALL_ARRAY:
                info = ArrayInfo(item_type, length, self.pos)
                if item_type == _STRING:
                    self.skip_strings(length)
                elif item_type in _SCALARS:
                    width = struct.calcsize(_SCALARS[item_type])
                    if width * length > len(self.buf) - self.pos:
                        raise GGUFError(f"{self.path.name}: GGUF header is cut short (a partial download?)")
                    self.pos += width * length
                else:
                    raise GGUFError(f"{self.path.name}: nested metadata arrays are not supported")
                return info
            if item_type == _ARRAY and depth >= 2:
                raise GGUFError(f"{self.path.name}: metadata arrays nested too deep")
            self.spend(length, 1)
            return [self.value(item_type, depth + 1) for _ in range(length)]
        fmt = _SCALARS.get(kind)
        if fmt is None:
            raise GGUFError(f"{self.path.name}: unknown GGUF value type {kind}")
        return self.unpack(fmt)


def read_header(path: str | Path, token_ids: tuple[str, ...] = ("tokenizer.ggml.eos_token_id",
                                                               "tokenizer.ggml.eot_token_id",
                                                               "tokenizer.ggml.bos_token_id")) -> GGUFHeader:
    """The header of the GGUF file at `path`; the texts of the tokens whose ids `token_ids` keys hold."""
    path = Path(path)
    try:
        fd = open_regular(path)  # a FIFO or a device is refused, never waited on or read without end
    except UnreadableFileError:
        raise GGUFError(f"{path.name}: not a GGUF file (not a regular file)") from None
    except OSError:
        raise GGUFError(f"{path}: cannot be read") from None
    try:
        with os.fdopen(fd, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < 24:
                raise GGUFError(f"{path.name}: not a GGUF file")
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return _parse(buf, path, size, token_ids)
    except OSError:
        raise GGUFError(f"{path}: cannot be read") from None


def _parse(buf: mmap.mmap, path: Path, size: int, token_ids: tuple[str, ...]) -> GGUFHeader:
    if buf[:4] != b"GGUF":
        raise GGUFError(f"{path.name}: not a GGUF file")
    cur = _Cursor(buf, path)
    cur.pos = 4
    version = cur.unpack("<I")
    if version not in (2, 3):
        raise GGUFError(f"{path.name}: GGUF version {version} is not supported (2 and 3 are)")
    tensor_count, kv_count = cur.unpack("<Q"), cur.unpack("<Q")
    cur.spend(kv_count, 8 + 4 + 1)  # a key (length + text), a type, a value of at least a byte
    cur.spend(tensor_count, 8 + 4 + 4 + 8)  # a name, dimensions count, type and offset
    metadata: dict[str, Any] = {}
    for _ in range(kv_count):
        key = cur.string()
        metadata[key] = cur.value(cur.unpack("<I"))
    parameters = 0
    for _ in range(tensor_count):
        cur.string()  # name
        rank = cur.unpack("<I")
        if rank > 8:  # ggml tensors have at most 4 dimensions
            raise GGUFError(f"{path.name}: a tensor with {rank} dimensions: not a GGUF file xitui can read")
        dims = [cur.unpack("<Q") for _ in range(rank)]
        cur.unpack("<I")  # ggml type
        cur.unpack("<Q")  # data offset
        parameters += prod(dims)
    header = GGUFHeader(path, version, metadata, tensor_count, parameters, size)
    wanted = {metadata[k] for k in token_ids if isinstance(metadata.get(k), int)}
    tokens = metadata.get("tokenizer.ggml.tokens")
    if wanted and tokens is not None:
        header.tokens = _token_texts(cur, tokens, wanted)
    return header


def _token_texts(cur: _Cursor, tokens: ArrayInfo | list[str], wanted: set[int]) -> dict[int, str]:
    if isinstance(tokens, list):
        return {i: tokens[i] for i in wanted if 0 <= i < len(tokens)}
    found: dict[int, str] = {}
    cur.pos = tokens.offset
    last = max(wanted)
    for i in range(min(last + 1, tokens.length)):
        if i in wanted:
            found[i] = cur.string()
        else:
            cur.skip_strings(1)
    return found
