"""PyTorch (transformers) streaming through xitui vs direct `generate` with a streamer, interleaved.

    python bench/serve_transformers.py [--rounds 3] [--tokens 128]

Real weights: the gemma-3-270m GGUF dequantised to a safetensors directory (built once, as the tests
do). Same prompt, greedy, 128 tokens (EOS ignored), same torch thread count. Target: >= 0.95 x direct.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from common import Server, median

from tests.model_files import gemma_pt_dir

PROMPT = "Write a long story about a lighthouse keeper and the sea. Once upon a time,"


def direct_round(model, tokenizer, tokens: int) -> tuple[float, float, int]:
    from transformers import TextIteratorStreamer

    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
    start = time.perf_counter()
    worker = threading.Thread(target=model.generate, kwargs=dict(
        input_ids=ids, max_new_tokens=tokens, min_new_tokens=tokens, do_sample=False, streamer=streamer))
    worker.start()
    first, count = None, 0
    for piece in streamer:
        if piece:
            first = first or time.perf_counter()
            count += 1
    end = time.perf_counter()
    worker.join()
    return first - start, tokens / (end - start), count


def server_round(handle, tokens: int) -> tuple[float, float, int]:
    start = time.perf_counter()
    first, count = None, 0
    for chunk in handle.generate(PROMPT, {"max_tokens": tokens, "temperature": 0, "stream": True, "ignore_eos": True}):
        if chunk["choices"][0]["text"]:
            first = first or time.perf_counter()
            count += 1
    end = time.perf_counter()
    return first - start, tokens / (end - start), count


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    directory = gemma_pt_dir()
    server = Server()
    try:
        from xitui.backends.device import set_torch_threads
        from xitui.client import Client

        client = Client(server.url)
        spec = {"version": 1, "context_length": 2048, "model_name": "bench-torch", "model_lang": ["en"],
                "model_ability": ["generate"], "model_family": "other",
                "model_specs": [{"model_format": "pytorch", "model_size_in_billions": "0_27",
                                 "quantizations": ["none"], "model_uri": str(directory)}]}
        client.register_model("LLM", json.dumps(spec))
        launches = []
        for _ in range(2):
            start = time.perf_counter()
            uid = client.launch_model(model_name="bench-torch", model_format="pytorch", model_engine="transformers")
            launches.append(time.perf_counter() - start)
            client.terminate_model(uid)
        uid = client.launch_model(model_name="bench-torch", model_format="pytorch", model_engine="transformers")
        handle = client.get_model(uid)

        set_torch_threads()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory).eval()
        direct_round(model, tokenizer, 8)
        server_round(handle, 8)
        rows: dict[str, list[tuple[float, float, int]]] = {"direct": [], "server": []}
        for _ in range(args.rounds):
            rows["direct"].append(direct_round(model, tokenizer, args.tokens))
            rows["server"].append(server_round(handle, args.tokens))
    finally:
        server.stop()

    def med(name: str, i: int) -> float:
        return median([r[i] for r in rows[name]])

    d, s = med("direct", 1), med("server", 1)
    print(f"gemma-3-270m (fp32 safetensors), {args.tokens} tokens, {args.rounds} rounds, greedy, CPU")
    print(f"tokens/s (whole request)   direct {d:6.1f}   server {s:6.1f}   {s / d:.3f} x direct   (target >= 0.95)")
    dt, st = med("direct", 0) * 1000, med("server", 0) * 1000
    print(f"time to first token        direct {dt:6.0f} ms  server {st:6.0f} ms   {st - dt:+.0f} ms   (target <= +15 ms)")
    print(f"launch to ready (pytorch): median {median(launches):.2f} s")


if __name__ == "__main__":
    main()
