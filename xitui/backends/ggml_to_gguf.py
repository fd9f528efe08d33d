"""GGML v3 (GGJT) files to GGUF, once, so that llama.cpp runs them again (it has read GGUF only since August
2023). No maintained package does this (llama.cpp's convert_llama_ggml_to_gguf.py is a script of its repository,
not on PyPI), so this is our own reader of that documented layout, kept small; the `gguf` package writes.

GGJT v3, little-endian: the magic "ggjt" and version 3; seven int32 hyperparameters (n_vocab, n_embd, n_mult,
n_head, n_layer, n_rot, ftype); n_vocab tokens (uint32 length, bytes, float32 score); then each tensor: int32
n_dims, name length and ggml type, n_dims int32 sizes (innermost first), the name, padding to 32 bytes, the data.
Version 3's block layouts are GGUF's, so tensor data is copied as it is. The files were LLaMA-family models
with a SentencePiece vocabulary, which llama.cpp knew by these fixed ids: <unk> 0, <s> 1, </s> 2.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xitui.core.errors import LaunchError

GGJT_MAGIC = 0x67676A74
#: What GGML v3's llama tensors are called in GGUF.
NAMES = {"tok_embeddings": "token_embd", "norm": "output_norm", "output": "output"}
LAYER_NAMES = {"attention.wq": "attn_q", "attention.wk": "attn_k", "attention.wv": "attn_v",
               "attention.wo": "attn_output", "attention_norm": "attn_norm", "feed_forward.w1": "ffn_gate",
               "feed_forward.w2": "ffn_down", "feed_forward.w3": "ffn_up", "ffn_norm": "ffn_norm"}
#: llama.cpp's GGML-era default (its converter's --eps): between LLaMA 1's 1e-6 and Llama 2's 1e-5.
RMS_EPS = 5e-6
MAX_VOCAB = 1_000_000


def gguf_name(name: str) -> str:
    found = re.fullmatch(r"layers\.(\d+)\.(.+)\.weight", name)
    if found and found.group(2) in LAYER_NAMES:
        return f"blk.{found.group(1)}.{LAYER_NAMES[found.group(2)]}.weight"
    base = name.removesuffix(".weight")
    if base in NAMES:
        return f"{NAMES[base]}.weight"
    raise LaunchError(f"GGML v3 tensor {name[:80]!r} is not one of a LLaMA model's")


def convert(source: Path, out: Path, context_length: int, progress: Callable[[float, str], None]) -> None:
    """Write `source` (GGML v3) as the GGUF `out`."""
    import mmap

    import gguf
    import numpy as np

    with open(source, "rb") as fh:
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    size = len(data)
    if size < 36 or struct.unpack_from("<I", data, 0)[0] != GGJT_MAGIC:
        raise LaunchError(f"{source.name} is not a GGML v3 (GGJT) file")
    version = struct.unpack_from("<I", data, 4)[0]
    if version != 3:
        raise LaunchError(f"{source.name} is GGJT version {version}: only version 3 keeps GGUF's block layouts")
    n_vocab, n_embd, _n_mult, n_head, n_layer, n_rot, ftype = struct.unpack_from("<7i", data, 8)
    if not (0 < n_vocab <= MAX_VOCAB and 0 < n_head <= n_embd and 0 < n_layer <= 1024 and 0 < n_rot <= n_embd):
        raise LaunchError(f"{source.name}: its hyperparameters are not a model's")
    offset = 36
    tokens, scores = [], []
    for _ in range(n_vocab):
        length = _read(data, "<I", offset, source)[0]
        if offset + 4 + length + 4 > size:
            raise LaunchError(f"{source.name} ends inside its vocabulary")
        tokens.append(data[offset + 4:offset + 4 + length])
        scores.append(struct.unpack_from("<f", data, offset + 4 + length)[0])
        offset += 8 + length
    tensors: list[tuple[str, Any, Any, list[int]]] = []
    while offset < size:
        n_dims, name_length, kind = _read(data, "<3i", offset, source)
        if not (1 <= n_dims <= 4 and 0 < name_length <= 256):
            raise LaunchError(f"{source.name}: a tensor header at byte {offset} is not one")
        dims = list(_read(data, f"<{n_dims}i", offset + 12, source))
        at = offset + 12 + 4 * n_dims
        name = data[at:at + name_length].decode("utf-8", errors="replace")
        at += name_length
        at += -at % 32
        try:
            qtype = gguf.GGMLQuantizationType(kind)
            block, type_size = gguf.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise LaunchError(f"{source.name}: tensor {name[:80]!r} has a type GGUF does not know ({kind})") from None
        count = 1
        for dim in dims:
            if dim <= 0:
                raise LaunchError(f"{source.name}: tensor {name[:80]!r} has a size of {dim}")
            count *= dim
        if dims[0] % block:
            raise LaunchError(f"{source.name}: tensor {name[:80]!r} is not whole blocks")
        nbytes = count // block * type_size
        if at + nbytes > size:
            raise LaunchError(f"{source.name} ends inside tensor {name[:80]!r}")
        tensors.append((gguf_name(name), qtype, np.frombuffer(data, dtype=np.uint8, count=nbytes, offset=at), dims))
        offset = at + nbytes
    shapes = {name: dims for name, _, _, dims in tensors}
    if "blk.0.attn_k.weight" not in shapes or "blk.0.ffn_gate.weight" not in shapes:
        raise LaunchError(f"{source.name}: no LLaMA layers in it")
    n_head_kv = n_head * shapes["blk.0.attn_k.weight"][1] // n_embd

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(source.stem)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(shapes["blk.0.ffn_gate.weight"][1])
    writer.add_rope_dimension_count(n_rot)
    writer.add_head_count(n_head)
    writer.add_head_count_kv(n_head_kv)
    writer.add_layer_norm_rms_eps(RMS_EPS)
    writer.add_file_type(ftype)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types([_token_type(i, text) for i, text in enumerate(tokens)])
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    for name, qtype, raw, dims in tensors:
        rows = list(reversed(dims))  # numpy's order: outermost first
        if qtype == gguf.GGMLQuantizationType.F32:
            writer.add_tensor(name, raw.view(np.float32).reshape(rows))
        elif qtype == gguf.GGMLQuantizationType.F16:
            writer.add_tensor(name, raw.view(np.float16).reshape(rows))
        else:
            writer.add_tensor(name, raw.reshape([*rows[:-1], -1]), raw_dtype=qtype)
    progress(0.5, f"writing {out.name} ({len(tensors)} tensors)")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _read(data: Any, fmt: str, offset: int, source: Path) -> tuple[Any, ...]:
    if offset + struct.calcsize(fmt) > len(data):
        raise LaunchError(f"{source.name} ends at byte {len(data)}, inside a header")
    return struct.unpack_from(fmt, data, offset)


def _token_type(index: int, text: bytes) -> int:
    """SentencePiece's kinds as llama.cpp's GGML-era vocabulary had them: 2 unknown, 3 control, 6 a byte, 1 a
    piece."""
    if index == 0:
        return 2
    if index in (1, 2):
        return 3
    return 6 if re.fullmatch(rb"<0x[0-9A-Fa-f]{2}>", text) else 1
