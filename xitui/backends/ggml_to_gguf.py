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

import os
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
#: The most bytes a vocabulary's tokens may hold in all (real ones: 1-4 MB): each is copied twice on the way.
MAX_VOCAB_BYTES = 64 * 2**20


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
        if os.fstat(fh.fileno()).st_size < 36:
            raise LaunchError(f"{source.name} is not a GGML v3 (GGJT) file")
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
    held = 0
    for _ in range(n_vocab):
        length = _read(data, "<I", offset, source)[0]
        if offset + 4 + length + 4 > size:
            raise LaunchError(f"{source.name} ends inside its vocabulary")
        held += length
        if held > MAX_VOCAB_BYTES:
            raise LaunchError(f"{source.name}: its vocabulary holds over {MAX_VOCAB_BYTES >> 20} MiB of text: "
                              "not a model's")
        tokens.append(data[offset + 4:offset + 4 + length])
        scores.append(struct.unpack_from("<f", data, offset + 4 + length)[0])
        offset += 8 + length
    if len(set(tokens)) != len(tokens):  # llama.cpp aborts the process on a vocabulary with a token twice
        raise LaunchError(f"{source.name}: its vocabulary has a token twice")
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
    n_head_kv, n_ff = _llama_shape(source, tensors, n_vocab, n_embd, n_head, n_layer, n_rot)
    if ftype not in range(64):
        raise LaunchError(f"{source.name}: its file type ({ftype}) is not one")
    _room_for(out, sum(raw.nbytes for _, _, raw, _ in tensors), source)

    writer = gguf.GGUFWriter(str(out), "llama")
    writer.add_name(source.stem)
    writer.add_context_length(context_length)
    writer.add_embedding_length(n_embd)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(n_ff)
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


def _llama_shape(source: Path, tensors: list[tuple[str, Any, Any, list[int]]], n_vocab: int, n_embd: int,
                 n_head: int, n_layer: int, n_rot: int) -> tuple[int, int]:
    """(n_head_kv, n_ff) where the tensors are a LLaMA model of these hyperparameters, else a one-line error:
    llama.cpp refuses (or aborts on) a GGUF whose tensors do not fit its header, and a converted file is kept."""
    shapes: dict[str, list[int]] = {}
    for name, _, _, dims in tensors:
        if name in shapes:
            raise LaunchError(f"{source.name}: tensor {name} is in it twice")
        shapes[name] = dims

    def shape(name: str) -> list[int]:
        if name not in shapes:
            raise LaunchError(f"{source.name}: no {name} in it: not a LLaMA model of {n_layer} layers")
        return shapes[name]

    if n_embd % n_head or (n_embd // n_head) % 2 or n_rot > n_embd // n_head:
        raise LaunchError(f"{source.name}: {n_head} heads do not divide its width ({n_embd}) as LLaMA's do")
    k, gate = shape("blk.0.attn_k.weight"), shape("blk.0.ffn_gate.weight")
    if len(k) != 2 or len(gate) != 2 or k[0] != n_embd or gate[0] != n_embd:
        raise LaunchError(f"{source.name}: its first layer's tensors are not {n_embd} wide")
    head = n_embd // n_head
    if k[1] % head or not 0 < k[1] // head <= n_head or n_head % (k[1] // head):
        raise LaunchError(f"{source.name}: its key heads ({k[1]} wide) do not fit {n_head} heads of {head}")
    n_head_kv, n_ff = k[1] // head, gate[1]
    want = {"token_embd.weight": [n_embd, n_vocab], "output_norm.weight": [n_embd]}
    for i in range(n_layer):
        want |= {f"blk.{i}.attn_q.weight": [n_embd, n_embd], f"blk.{i}.attn_k.weight": [n_embd, k[1]],
                 f"blk.{i}.attn_v.weight": [n_embd, k[1]], f"blk.{i}.attn_output.weight": [n_embd, n_embd],
                 f"blk.{i}.attn_norm.weight": [n_embd], f"blk.{i}.ffn_norm.weight": [n_embd],
                 f"blk.{i}.ffn_gate.weight": [n_embd, n_ff], f"blk.{i}.ffn_up.weight": [n_embd, n_ff],
                 f"blk.{i}.ffn_down.weight": [n_ff, n_embd]}
    for name, dims in want.items():
        if shape(name) != dims:
            raise LaunchError(f"{source.name}: tensor {name} is {shape(name)}, a LLaMA of these sizes has {dims}")
    extra = set(shapes) - set(want) - {"output.weight"}
    if extra:
        raise LaunchError(f"{source.name}: tensors beyond its {n_layer} layers ({sorted(extra)[0]}...)")
    if "output.weight" in shapes and shapes["output.weight"] != [n_embd, n_vocab]:
        raise LaunchError(f"{source.name}: its output tensor is not {n_embd} by {n_vocab}")
    return n_head_kv, n_ff


def _room_for(out: Path, nbytes: int, source: Path) -> None:
    """Refuse before writing what the disk cannot hold (a sparse file claims more than it takes)."""
    import shutil

    free = shutil.disk_usage(out.parent).free
    if nbytes + (64 << 20) > free:
        raise LaunchError(f"{source.name}: converting it writes {nbytes / 2**30:.1f} GiB, {out.parent} has "
                          f"{free / 2**30:.1f} GiB free")


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
