"""The GPU paths, checked on a machine with an NVIDIA GPU: CUDA torch through the transformers backend, NVML
memory by model, the dashboard's resources view, and memory freed on terminate.

    python bench/gpu_check.py [--out DIR]

Builds a randomly initialised Llama (~100 M parameters) with a small word-level tokenizer, so it needs no
download; prints what it saw and writes the dashboard's resources tab as an SVG to DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = ["the", "a", "of", "to", "and", "in", "is", "it", "you", "that", "he", "was", "for", "on", "are", "with", "as", "I", "his", "they", "be", "at", "one", "have", "this", "from", "or", "had", "by", "word", "but", "what", "some", "we", "can", "out", "other", "were", "all", "there", "when", "up", "use", "your", "how", "said", "an", "each", "she", "which", "do", "their", "time", "if", "will", "way", "about", "many", "then", "them", "write", "would", "like", "so", "these", "her", "long", "make", "thing", "see", "him", "two", "has", "look", "more", "day", "could", "go", "come", "did", "number", "sound", "no", "most", "people", "my", "over", "know", "water", "than", "call", "first", "who", "may", "down", "side", "been", "now", "find"]  # noqa: SIM905 - a word list reads better as text


def build_model(folder: Path) -> None:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, **{w: i + 3 for i, w in enumerate(dict.fromkeys(WORDS))}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>")
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=1024, intermediate_size=2816, num_hidden_layers=8,
                         num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=2048,
                         bos_token_id=1, eos_token_id=2)
    LlamaForCausalLM(config).save_pretrained(folder)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", default=os.environ.get("OUT", "."))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}, "
          f"device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'}")
    from xitui.core.machine import memory as resources
    gpus, note = resources.gpus()
    print(f"NVML: {len(gpus)} GPU(s) {note or ''}: " + "; ".join(
        f"{g['name']} {g['memory_used'] / 2**20:.0f}/{g['memory_total'] / 2**20:.0f} MiB util {g['utilization']}%"
        for g in gpus))

    work = Path(tempfile.mkdtemp(prefix="xitui-gpu-"))
    model_dir = work / "tiny-llama"
    start = time.monotonic()
    build_model(model_dir)
    print(f"built a {sum(p.stat().st_size for p in model_dir.glob('*.safetensors')) / 2**20:.0f} MiB model "
          f"in {time.monotonic() - start:.1f} s")

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import common

    from xitui.client import Client

    server = common.Server()
    try:
        client = Client(server.url)
        spec = {"version": 2, "model_name": "gpu-llama", "context_length": 1024, "model_lang": ["en"],
                "model_ability": ["generate"], "model_family": "other",
                "model_specs": [{"model_format": "pytorch", "model_size_in_billions": "0_1", "quantization": "none",
                                 "model_uri": str(model_dir)}]}
        client.register_model("LLM", json.dumps(spec))
        deadline = time.monotonic() + 120
        while client.status()["warm_worker"]["state"] not in ("ready", "off") and time.monotonic() < deadline:
            time.sleep(0.2)
        warm = client.status()["warm_worker"]
        print(f"warm worker {warm['state']}: imported {warm['loaded']} in {warm['import_seconds'] or 0:.1f} s "
              f"(failed: {warm['failed'] or 'none'}), RSS {(warm['memory_rss'] or 0) / 2**20:.0f} MiB")
        start = time.monotonic()
        uid = client.launch_model(model_name="gpu-llama")
        desc = client.describe_model(uid)
        print(f"launched {uid} in {time.monotonic() - start:.1f} s ({desc.get('start')} start, stages "
              f"{ {k: round(v, 2) for k, v in (desc.get('launch_stages') or {}).items()} }): "
              f"device {desc.get('device')}, pid {desc.get('pid')}")
        answer = client.get_model(uid).generate("the word of the day is", {"max_tokens": 32, "temperature": 0,
                                                                          "ignore_eos": True})
        metrics = client.describe_model(uid)["metrics"]
        print(f"generated {answer['usage']['completion_tokens']} tokens; server: first token "
              f"{metrics['last_ttft'] * 1000:.0f} ms, {metrics['last_tokens_per_s']:.1f} tokens/s")
        snap = client.resources()
        for gpu in snap["gpus"]:
            print(f"GPU {gpu['index']}: {gpu['memory_used'] / 2**20:.0f} MiB used; processes: " + ", ".join(
                f"pid {p['pid']} -> {p['model_uid'] or '(not a model)'}: "
                f"{(p['memory_used'] or 0) / 2**20:.0f} MiB" for p in gpu["processes"]) or "none listed")
        joined = any(p["model_uid"] == uid for g in snap["gpus"] for p in g["processes"])
        print(f"worker pid joined with its model in NVML's process list: {joined}")
        est = client.describe_model(uid)["estimate"]
        held = sum(p["memory_used"] or 0 for g in snap["gpus"] for p in g["processes"] if p["model_uid"] == uid)
        print(f"estimate: device {est['device']}, GPU {est['gpu'] / 2**20:.0f} MiB (weights "
              f"{est['weights'] / 2**20:.0f} + KV {est['kv_cache'] / 2**20:.0f} + overhead "
              f"{est['overhead'] / 2**20:.0f} + CUDA runtime {est['gpu_runtime'] / 2**20:.0f}), RAM {est['ram'] / 2**20:.0f} MiB; NVML says the worker holds "
              f"{held / 2**20:.0f} MiB ({est['gpu'] / held:.2f} x)" if held else "no NVML figure for the worker")
        from xitui.cli.model_commands import estimate_text
        from xitui.core.errors import XituiError

        print(estimate_text(client.estimate_launch("gpu-llama", context_length=4096)))

        try:
            client.launch_model(model_name="gpu-llama", model_uid="too-big", context_length=10_000_000)
            print("a 10M-token context launched: the GPU fit check did not refuse it")
        except XituiError as exc:
            print(f"a 10M-token context was refused: {exc}")

        from xitui.tui.dashboard_app import make_app
        from xitui.tui.widgets.models_table import ModelsTable

        async def dashboard() -> None:
            app = make_app(Client(server.url), server.url, "dark")
            async with app.run_test(size=(120, 40)) as pilot:
                while uid not in app.query_one(ModelsTable)._rows or app.dashboard.last_snapshot is None \
                        or not app.dashboard.last_snapshot.resources:
                    await pilot.pause(0.1)
                await pilot.pause(1.2)
                print("dashboard row:", " | ".join(app.query_one(ModelsTable)._rows[uid]))
                await pilot.press("3")
                await pilot.pause(0.5)
                app.save_screenshot(filename="dashboard_resources.svg", path=str(out))

        asyncio.run(dashboard())
        # the same model started cold (a launch that sets a library variable never forks), for comparison
        start = time.monotonic()
        cold = client.launch_model(model_name="gpu-llama", model_uid="cold", envs={"CUDA_MODULE_LOADING": "LAZY"})
        cdesc = client.describe_model(cold)
        text = client.get_model(cold).generate("the word of the day is", {"max_tokens": 32, "temperature": 0,
                                                                        "ignore_eos": True})["choices"][0]["text"]
        print(f"cold launch {time.monotonic() - start:.1f} s ({cdesc.get('start')} start, stages "
              f"{ {k: round(v, 2) for k, v in (cdesc.get('launch_stages') or {}).items()} }), device "
              f"{cdesc.get('device')}; same greedy text as the forked worker: {text == answer['choices'][0]['text']}")
        client.terminate_model(cold)
        client.terminate_model(uid)
        time.sleep(1.0)
        after = client.resources()
        left = [p for g in after["gpus"] for p in g["processes"] if p["pid"] == desc.get("pid")]
        used = sum(g["memory_used"] for g in after["gpus"]) / 2**20
        print(f"after terminate: GPU memory used {used:.0f} MiB; worker still on the GPU: {bool(left)}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
