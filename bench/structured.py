"""Structured output's cost: tokens/s of an answer held to a JSON schema against the same number of tokens
generated freely, same prompt, same model, same server; and the first token's wait with and without.

    python bench/structured.py [--rounds 3]

Both bundled GGUF models (SmolLM2: 49k-token vocabulary; Gemma 3: 262k, where a grammar has five times the
tokens to check per step), with 4 slots and with one (n_parallel 1; the same batch engine); and the
Gemma 3 weights as safetensors on the transformers engine (llguidance). The figures are the server's own
(`metrics.last_tokens_per_s`, `last_ttft` after each request). Target (issue 22): constrained >= 0.9 x free.
The transformers engine's first constrained request also reads the tokenizer into llguidance (seconds, once
per model): the warm-up request below takes it.
"""

from __future__ import annotations

import argparse

import common

SCHEMA = {"type": "object", "additionalProperties": False, "required": ["names"], "properties": {
    "names": {"type": "array", "minItems": 24, "maxItems": 24, "items": {"type": "string", "maxLength": 12}}}}
PROMPT = "List twenty-four first names as JSON."
TEMPLATE = "{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}<assistant>"


def one(client: object, uid: str, body: dict) -> tuple[float, float, int]:
    """(tokens/s, ttft seconds, completion tokens) of one request, as the server measured them."""
    done = client.get_model(uid).chat([{"role": "user", "content": PROMPT}], generate_config=body)  # type: ignore[attr-defined]
    metrics = client.describe_model(uid)["metrics"]  # type: ignore[attr-defined]
    return metrics["last_tokens_per_s"], metrics["last_ttft"], done["usage"]["completion_tokens"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from xitui.client import Client

    server = common.Server()
    client = Client(server.url)
    form = {"type": "json_schema", "json_schema": {"name": "names", "schema": SCHEMA}}
    try:
        print(f"{'model, engine':<34} {'free tok/s':>10} {'schema tok/s':>12} {'ratio':>6}   "
              f"{'free ttft':>9} {'schema ttft':>11}")
        from tests.model_files import gemma_pt_dir
        from tests.server.conftest import pytorch_spec

        client.register_model("LLM", pytorch_spec("bench-torch", gemma_pt_dir(), version=2, model_ability=["chat"],
                                                  chat_template=TEMPLATE).replace(
            '"quantizations": ["4-bit", "8-bit", "none"]', '"quantization": "none"'))
        runs = [(n, s) for n in ("demo-smollm2-135m", "demo-gemma3-270m") for s in (4, 1)] + [("bench-torch", 0)]
        for name, slots in runs:  # slots 0: the transformers engine
            uid = f"{name}-{slots}"
            if slots:
                client.launch_model(model_name=name, model_uid=uid, n_parallel=slots, context_length=2048)
            else:
                client.launch_model(model_name=name, model_uid=uid, model_format="pytorch")
            free, held, free_ttft, held_ttft = [], [], [], []
            one(client, uid, {"max_tokens": 8, "temperature": 0})  # warm
            one(client, uid, {"max_tokens": 8, "temperature": 0, "response_format": {"type": "json_object"}})
            for _ in range(args.rounds):  # interleaved
                rate, ttft, tokens = one(client, uid, {"response_format": form, "max_tokens": 400,
                                                       "temperature": 0})
                held.append(rate)
                held_ttft.append(ttft)
                rate, ttft, _ = one(client, uid, {"max_tokens": tokens, "ignore_eos": True, "temperature": 0})
                free.append(rate)
                free_ttft.append(ttft)
            ratio = common.median(held) / common.median(free)
            engine = {4: "llama.cpp, 4 slots", 1: "llama.cpp, 1 slot", 0: "transformers"}[slots]
            print(f"{name + ', ' + engine:<34} {common.median(free):10.1f} {common.median(held):12.1f} "
                  f"{ratio:6.3f}   {common.median(free_ttft) * 1000:7.1f} ms {common.median(held_ttft) * 1000:8.1f} ms"
                  f"   ({tokens} tokens)  {'OK' if ratio >= 0.9 else 'UNDER the 0.9 target'}")
            client.terminate_model(uid)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
