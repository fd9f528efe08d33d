"""PyTorch (safetensors) models on llama.cpp: the conversion's cost, and what it buys, in one run.

    python bench/convert.py [--tokens 128] [--rounds 2]

Real weights: the Gemma 3 270M safetensors the tests build. Through xitui's server with a fresh home:
  1. launch with model_engine transformers (the old path) and time its streamed tokens;
  2. launch with no engine named (on this CPU-only machine: llama.cpp), quantization none, 8-bit, 4-bit: each
     launch converts (F16 by llama.cpp's converter, then Q8_0 / Q4_K_M by its quantizer, from the F16 kept);
     the launch's stages say how long converting and quantizing took;
  3. the same streamed request on each, greedy, EOS ignored, the rounds interleaved.
Targets (issue 33): llama.cpp after conversion >= 5x transformers' tokens/s; the conversion of the 270M
model <= 60 s.
"""

from __future__ import annotations

import argparse
import json
import time

from common import Server, median

from tests.model_files import gemma_pt_dir

PROMPT = "Write a long story about a lighthouse keeper and the sea. Once upon a time,"


def stream_rate(handle, tokens: int) -> float:
    start = time.perf_counter()
    for _ in handle.generate(PROMPT, {"max_tokens": tokens, "temperature": 0, "stream": True, "ignore_eos": True}):
        pass
    return tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    directory = gemma_pt_dir()
    server = Server()
    try:
        from xitui.client import Client

        client = Client(server.url)
        spec = {"version": 2, "context_length": 2048, "model_name": "bench-st", "model_lang": ["en"],
                "model_ability": ["generate"], "model_family": "other",
                "model_specs": [{"model_format": "pytorch", "model_size_in_billions": "0_27", "quantization": q,
                                 "model_uri": str(directory)} for q in ("none", "8-bit", "4-bit")]}
        client.register_model("LLM", json.dumps(spec))
        launched: dict[str, str] = {}
        facts: dict[str, str] = {}
        start = time.perf_counter()
        launched["transformers"] = client.launch_model(model_name="bench-st", model_uid="st-torch",
                                                       quantization="none", model_engine="transformers",
                                                       n_parallel=1)
        facts["transformers"] = f"launch {time.perf_counter() - start:.1f} s"
        for quant, name in (("none", "F16"), ("8-bit", "Q8_0"), ("4-bit", "Q4_K_M")):
            start = time.perf_counter()
            uid = client.launch_model(model_name="bench-st", model_uid=f"st-{name.lower()}", quantization=quant,
                                      n_parallel=1)
            took = time.perf_counter() - start
            stages = client.describe_model(uid)["launch_stages"] or {}
            made = ", ".join(f"{k} {stages[k]:.1f} s" for k in ("convert", "quantize") if k in stages)
            facts[name] = f"launch {took:.1f} s ({made})"
            launched[name] = uid
        handles = {name: client.get_model(uid) for name, uid in launched.items()}
        for handle in handles.values():
            stream_rate(handle, 8)
        rates: dict[str, list[float]] = {name: [] for name in handles}
        for _ in range(args.rounds):
            for name, handle in handles.items():
                rates[name].append(stream_rate(handle, args.tokens))
    finally:
        server.stop()
    base = median(rates["transformers"])
    print(f"gemma-3-270m safetensors, {args.tokens} tokens streamed, {args.rounds} rounds, greedy, CPU, 1 slot")
    for name in rates:
        rate = median(rates[name])
        print(f"{name:13s} {rate:6.1f} tokens/s  {rate / base:5.2f} x transformers   {facts[name]}")
    print("targets: >= 5x transformers after conversion; conversion of the 270M model <= 60 s")


if __name__ == "__main__":
    main()
