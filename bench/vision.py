"""Images through xitui against llama.cpp's multimodal library (mtmd) driven directly, in one run.

    python bench/vision.py [--rounds 5] [--vision-width 768] [--vision-layers 12]

The model: tests/model_files.tiny_vlm with a SigLIP-base-sized vision part (768 wide, 12 layers, 224 px: its
encoder's work is a real small VLM's) before a 2-layer text part, converted by llama.cpp's converter. Random
weights: the answers are noise, the work is real.
  1. time to first token with one image (a new image each round, so no cells are reused, after WARM images
     on each side): mtmd's helper and llama-cpp-python in this process against xitui's server (streamed
     chat, the first piece), the two sides' rounds in turn; target <= 1.1x;
  2. four image requests at once against one alone: the tokens of all four per second against one's
     (target >= 1.5x), 32 tokens each; and the same work driven directly (direct_rates), the bound this
     machine sets: where one image's encode takes both cores, four encodes take four times as long however
     they are scheduled.
"""

from __future__ import annotations

import argparse
import base64
import ctypes
import io
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from common import Server, median

from tests.model_files import tiny_vlm

QUESTION = "What is in the picture?"
#: Images each side reads before the timed ones.
WARM = 4
#: Tokens each answer of the four-at-once figure writes.
TOKENS = 32


def picture(seed: int) -> bytes:
    import numpy as np
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 255, (224, 224, 3), dtype=np.uint8)).save(out, "PNG")
    return out.getvalue()


def _projector(projector: str, llm: Any, threads: int) -> tuple[Any, bytes]:
    """mtmd's context for the projector, and the prompt (one question, one image) in its marker."""
    from llama_cpp import mtmd_cpp as M

    params = M.mtmd_context_params_default()
    params.use_gpu, params.n_threads, params.print_timings = False, threads, False
    ctx = M.mtmd_init_from_file(projector.encode(), llm._model.model, params)
    marker = M.mtmd_default_marker().decode()
    return ctx, f"<start_of_turn>user\n{QUESTION}{marker}<end_of_turn>\n<start_of_turn>model\n".encode()


def _read_image(ctx: Any, lctx: Any, text: bytes, data: bytes, seq: int, n_vocab: int) -> tuple[int, int]:
    """The prompt with the image `data` read into sequence `seq` of `lctx` (its image encoded on the way): the
    greedy first token, and the position after the prompt."""
    import llama_cpp
    import numpy as np
    from llama_cpp import mtmd_cpp as M

    buffer = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
    bitmap = M.mtmd_helper_bitmap_init_from_buf(ctx, buffer, len(data), False)
    chunks = M.mtmd_input_chunks_init()
    given = M.mtmd_input_text(text, len(text), True, True)
    M.mtmd_tokenize(ctx, chunks, ctypes.byref(given), (M.mtmd_bitmap_p_ctypes * 1)(bitmap), 1)
    after = llama_cpp.llama_pos(0)
    M.mtmd_helper_eval_chunks(ctx, lctx, chunks, 0, seq, 512, True, ctypes.byref(after))
    logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(lctx, -1), shape=(n_vocab,))
    M.mtmd_input_chunks_free(chunks)
    M.mtmd_bitmap_free(bitmap)
    return int(logits.argmax()), int(after.value)


class DirectReader:
    """mtmd and llama-cpp-python in this process, held open beside the server so the two sides' rounds can
    take turns: this VM's speed drifts by 15% from one minute to the next, and rounds taken in turn put the
    drift on both sides alike."""

    def __init__(self, gguf: str, projector: str, threads: int) -> None:
        import llama_cpp

        self.llm = llama_cpp.Llama(gguf, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=threads,
                                   n_threads_batch=threads, verbose=False)
        self.ctx, self.text = _projector(projector, self.llm, threads)
        self.memory = llama_cpp.llama_get_memory(self.llm._ctx.ctx)

    def ttft(self, data: bytes) -> float:
        """Seconds from an image and its question to the first token, the cache empty."""
        import llama_cpp

        llama_cpp.llama_memory_clear(self.memory, True)
        start = time.perf_counter()
        _read_image(self.ctx, self.llm._ctx.ctx, self.text, data, 0, self.llm.n_vocab())
        return time.perf_counter() - start

    def close(self) -> None:
        from llama_cpp import mtmd_cpp as M

        M.mtmd_free(self.ctx)
        self.llm.close()


def direct_rates(gguf: str, projector: str, rounds: list[list[bytes]], threads: int, tokens: int) -> list[float]:
    """Tokens per second of mtmd and llama.cpp driven directly for each round's images at once: each image
    encoded and its prompt read into a sequence of its own, one after the other (the encoder takes the whole
    machine), then `tokens` greedy tokens for all of them, one batch a step: what the library itself does with
    several image requests, for the server's figure to be read against."""
    import llama_cpp
    import numpy as np
    from llama_cpp import mtmd_cpp as M

    llm = llama_cpp.Llama(gguf, n_ctx=64, n_threads=threads, n_threads_batch=threads, verbose=False)
    params = llama_cpp.llama_context_params()
    ctypes.pointer(params)[0] = llm.context_params
    params.n_ctx, params.n_seq_max, params.kv_unified = 2048, 4, True
    params.n_batch = params.n_ubatch = 512
    lctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    ctx, text = _projector(projector, llm, threads)
    n_vocab = llm.n_vocab()
    batch = llama_cpp.llama_batch_init(4, 0, 1)
    rates = []
    for images in rounds:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(lctx), True)
        start = time.perf_counter()
        read = [_read_image(ctx, lctx, text, data, seq, n_vocab) for seq, data in enumerate(images)]
        last, pos = [token for token, _ in read], [after for _, after in read]
        for _ in range(tokens - 1):
            for i, token in enumerate(last):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos[i], 1, True
                batch.seq_id[i][0] = i
                pos[i] += 1
            batch.n_tokens = len(last)
            llama_cpp.llama_decode(lctx, batch)
            last = [int(np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(lctx, i), shape=(n_vocab,)).argmax())
                    for i in range(len(last))]
        rates.append(len(images) * tokens / (time.perf_counter() - start))
    llama_cpp.llama_batch_free(batch)
    M.mtmd_free(ctx)
    llama_cpp.llama_free(lctx)
    return rates


def messages(data: bytes) -> list[dict]:
    url = "data:image/png;base64," + base64.b64encode(data).decode()
    return [{"role": "user", "content": [{"type": "text", "text": QUESTION},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


def served_ttft(http: Any, url: str, uid: str, data: bytes) -> float:
    """The first piece of a streamed answer, on `http` (one httpx.Client, its connection kept, as a program
    holds one: a new client each time costs ~20 ms of its own, loading its TLS context); the rest of the answer
    is read, untimed, so each request finds the model idle, as the direct side's does."""
    first = None
    start = time.perf_counter()
    with http.stream("POST", f"{url}/v1/chat/completions", timeout=120, json={
            "model": uid, "messages": messages(data), "max_tokens": 2, "temperature": 0, "stream": True}) as reply:
        for line in reply.iter_lines():
            if first is None and line.startswith("data: ") and '"content"' in line:
                first = time.perf_counter() - start
    if first is None:
        raise RuntimeError("no answer")
    return first


def tokens_of(http: Any, url: str, uid: str, data: bytes, tokens: int) -> int:
    done = http.post(f"{url}/v1/chat/completions", timeout=300, json={
        "model": uid, "messages": messages(data), "max_tokens": tokens, "temperature": 0, "ignore_eos": True})
    return int(done.json()["usage"]["completion_tokens"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--vision-width", type=int, default=768)
    parser.add_argument("--vision-layers", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    gguf, projector = tiny_vlm(args.vision_width, args.vision_layers)
    rounds = args.rounds
    sets = [[picture(5000 + 10 * r)] for r in range(rounds)] + [[picture(6000 + 10 * r + i) for i in range(4)]
                                                                  for r in range(rounds)]
    rates = direct_rates(str(gguf), str(projector), [[picture(7000)], *sets], args.threads, TOKENS)[1:]
    direct_one, direct_four = rates[:rounds], rates[rounds:]
    server = Server('[server]\nwarm = ["none"]\n')  # no warm worker importing its libraries meanwhile
    reader = None
    try:
        import httpx

        from xitui.client import Client

        client = Client(server.url)
        client.register_model("LLM", json.dumps({
            "version": 2, "model_name": "bench-vlm", "model_lang": ["en"], "model_ability": ["chat", "vision"],
            "context_length": 2048, "model_specs": [{
                "model_format": "ggufv2", "model_size_in_billions": "0_1", "quantization": "F16",
                "model_file_name_template": gguf.name.replace("F16", "{quantization}"),
                "model_uri": str(gguf.parent), "multimodal_projectors": [projector.name]}]}))
        uid = client.launch_model(model_name="bench-vlm", n_parallel=4, n_threads=args.threads)
        reader = DirectReader(str(gguf), str(projector), args.threads)
        direct: list[float] = []
        served: list[float] = []
        with httpx.Client() as http:
            # both sides read WARM images first (a fresh context's first encode allocates its work space); the
            # server runs no warm worker: importing its libraries beside the model took encodes from 200 to 800 ms
            for i in range(WARM):
                reader.ttft(picture(1000 + i))
                served_ttft(http, server.url, uid, picture(1 + i))
            for r in range(rounds):  # in turn, each side first every other round
                for side in ("direct", "xitui") if r % 2 == 0 else ("xitui", "direct"):
                    if side == "direct":
                        direct.append(reader.ttft(picture(1000 + WARM + r)))
                    else:
                        served.append(served_ttft(http, server.url, uid, picture(2000 + r)))
        one = []
        four = []
        with httpx.Client(limits=httpx.Limits(max_connections=8)) as http:
            for r in range(rounds):
                start = time.perf_counter()
                count = tokens_of(http, server.url, uid, picture(3000 + r), TOKENS)
                one.append(count / (time.perf_counter() - start))
                start = time.perf_counter()
                pictures = [picture(4000 + 10 * r + i) for i in range(4)]
                with ThreadPoolExecutor(4) as pool:
                    counts = list(pool.map(lambda data: tokens_of(http, server.url, uid, data, TOKENS), pictures))
                four.append(sum(counts) / (time.perf_counter() - start))
    finally:
        if reader is not None:
            reader.close()
        server.stop()
    d, s = median(direct), median(served)
    print(f"vision part {args.vision_width} x {args.vision_layers}, {args.threads} threads, {rounds} rounds")
    print(f"time to first token, one image: direct mtmd {d * 1000:.0f} ms, xitui {s * 1000:.0f} ms: "
          f"{s / d:.2f}x (target <= 1.1x)")
    print(f"  each round, ms: direct {[round(t * 1000) for t in direct]}, xitui {[round(t * 1000) for t in served]}")
    print(f"four image requests at once: {median(four):.1f} tokens/s against one's {median(one):.1f}: "
          f"{median(four) / median(one):.2f}x (target >= 1.5x)")
    d1, d4 = median(direct_one), median(direct_four)
    print(f"  the library driven directly, the same work: four {d4:.1f} tokens/s against one's {d1:.1f}: "
          f"{d4 / d1:.2f}x; xitui's four {median(four) / d4:.2f}x of its four, one {median(one) / d1:.2f}x of its one")


if __name__ == "__main__":
    main()
