"""Images into a llama.cpp model's sequence, through llama.cpp's multimodal library (mtmd) and the model's
projector file: a prompt with images becomes text tokens and image runs; an image run is encoded by the
projector and its embeddings decoded into one slot's sequence of the batch engine (llamacpp_batch.py).

In the engine's token lists an image's cells are written as a placeholder id, negative (no token is), the
same for every cell of one image: its bytes' whole SHA-256 as a number (Python's ints hold it; placeholders
never reach llama.cpp). A later prompt with the same image at the same place reuses its cells like any
prompt prefix, and another image never matches them.

The marker that says where an image goes in the rendered prompt is this worker's own, made at random when it
loads (mtmd_context_params.media_marker): a client's text cannot write it. The server marks image places
with a marker of the request's own (wire.ChatRequest.image_marker); the two are swapped after rendering.
"""

from __future__ import annotations

import ctypes
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

from xitui.backends.base import RequestError
from xitui.core.errors import LaunchError


class Chunks:
    """mtmd's chunks of one prompt (text runs and images), freed when the last image of them is let go."""

    def __init__(self, lib: Any, handle: Any) -> None:
        self.lib, self.handle = lib, handle

    def __del__(self) -> None:
        if self.handle:
            self.lib.mtmd_input_chunks_free(self.handle)
            self.handle = None


@dataclass(eq=False)
class Image:
    """One image of a prompt: its chunk (held through its prompt's Chunks) and the cells it takes."""

    chunks: Chunks
    chunk: Any
    n_tokens: int
    #: A sound clip's run rather than an image's (mtmd reads both the same way).
    audio: bool = False


class Media:
    """The projector of a model loaded for its images (one per worker)."""

    def __init__(self, projector: str, llm: Any, threads: int) -> None:
        from llama_cpp import mtmd_cpp

        self.M = mtmd_cpp
        self.marker = f"<__xitui_media_{secrets.token_hex(12)}__>"
        self._marker_bytes = self.marker.encode()  # (kept alive: mtmd reads the pointer at each tokenize)
        params = mtmd_cpp.mtmd_context_params_default()
        params.use_gpu = False
        params.n_threads = threads
        params.print_timings = False
        params.media_marker = self._marker_bytes
        ctx = mtmd_cpp.mtmd_init_from_file(projector.encode(), llm._model.model, params)
        if not ctx:
            raise LaunchError(f"llama.cpp could not load the projector {projector} for this model (its "
                              "architecture, or its width against the model's)")
        self.ctx = ctx
        self.vision = bool(mtmd_cpp.mtmd_support_vision(ctx))
        self.audio = bool(mtmd_cpp.mtmd_support_audio(ctx))
        if mtmd_cpp.mtmd_decode_use_mrope(ctx):  # positions in several dimensions (Qwen2-VL and its kin)
            mtmd_cpp.mtmd_free(ctx)
            raise LaunchError(f"{projector}: its model places image cells by M-RoPE (Qwen2-VL's kind), which "
                              "xitui's batch engine does not yet do")

    def tokenize(self, prompt: str, images: list[bytes], add_bos: bool) -> tuple[list[int], dict[int, Image]]:
        """The prompt's tokens, each image's cells as its placeholder; the images by where their run starts."""
        M = self.M
        if prompt.count(self.marker) != len(images):
            raise RequestError(f"the rendered prompt places {prompt.count(self.marker)} of the {len(images)} "
                               "images: the model's chat template drops images from some messages")
        bitmaps = []
        try:
            for i, data in enumerate(images):
                buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
                bitmap = M.mtmd_helper_bitmap_init_from_buf(self.ctx, buffer, len(data), False)
                if not bitmap:
                    raise RequestError(f"image or clip {i + 1}: not a file llama.cpp can read (a corrupt or unknown "
                                       "one)")
                M.mtmd_bitmap_set_id(bitmap, hashlib.sha256(data).hexdigest().encode())
                bitmaps.append(bitmap)
            text = prompt.encode("utf-8")
            given = M.mtmd_input_text(text, len(text), add_bos, True)
            handle = M.mtmd_input_chunks_init()
            chunks = Chunks(M, handle)
            array = (M.mtmd_bitmap_p_ctypes * max(1, len(bitmaps)))(*bitmaps)
            code = M.mtmd_tokenize(self.ctx, handle, ctypes.byref(given), array, len(bitmaps))
            if code != 0:
                raise RequestError(f"the images could not be placed in the prompt (mtmd_tokenize: {code})")
        finally:
            for bitmap in bitmaps:
                M.mtmd_bitmap_free(bitmap)
        tokens: list[int] = []
        placed: dict[int, Image] = {}
        for i in range(M.mtmd_input_chunks_size(handle)):
            chunk = M.mtmd_input_chunks_get(handle, i)
            if M.mtmd_input_chunk_get_type(chunk) == M.MTMD_INPUT_CHUNK_TYPE_TEXT:
                count = ctypes.c_size_t(0)
                ids = M.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(count))
                tokens.extend(ids[k] for k in range(count.value))
                continue
            n_tokens = int(M.mtmd_input_chunk_get_n_tokens(chunk))
            image_id = M.mtmd_input_chunk_get_id(chunk) or b""
            # all 256 bits of the image's hash: a prompt that reuses another's cells must have sent the same
            # image (28 bits let a client make two images that matched in seconds, and read another's answer)
            placeholder = -1 - int(image_id.decode() or "0", 16)
            audio = M.mtmd_input_chunk_get_type(chunk) == M.MTMD_INPUT_CHUNK_TYPE_AUDIO
            placed[len(tokens)] = Image(chunks, chunk, n_tokens, audio)
            tokens.extend([placeholder] * n_tokens)
        return tokens, placed

    def decode(self, image: Image, lctx: Any, n_past: int, seq: int, n_batch: int) -> int:
        """Encode the image and decode its embeddings into sequence `seq` from position `n_past`; the position
        after it."""
        import llama_cpp

        after = llama_cpp.llama_pos(0)
        code = self.M.mtmd_helper_eval_chunk_single(self.ctx, lctx, image.chunk, n_past, seq, n_batch, False,
                                                    ctypes.byref(after))
        if code != 0:
            raise RequestError(f"llama.cpp could not read the image into the model (code {code})")
        return int(after.value)
