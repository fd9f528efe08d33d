"""Structured output's cost: tokens/s of an answer held to a JSON schema against the same number of tokens
generated freely, same prompt, same model, same server; and the first token's wait with and without.

    python bench/structured.py [--rounds 3]

Both bundled GGUF models (SmolLM2: 49k-token vocabulary; Gemma 3: 262k, where a grammar has five times the
tokens to check per step), with 4 slots and with one (n_parallel 1; the same batch engine); and the
Gemma 3 weights as safetensors on the transformers engine (llguidance). The figures are the server's own
(`metrics.last_tokens_per_s`, `last_ttft` after each request). Target (issue 22): constrained >= 0.9 x free.
The transformers engine's first constrained request also reads the tokenizer into llguidance (seconds, once
per model): the warm-up request below takes it.

    python bench/structured.py --masks

The work one token's mask costs for the grammars of tests/server/test_hostile.py (those that crashed or
stalled llama.cpp's own grammar sampler), on both bundled vocabularies: the worst any of them costs per token
is what a hostile request can add to each step of the batch (issue 31).
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


#: Grammars and schemas written to hurt (tests/server/test_hostile.py), and what a schema of every day costs.
HOSTILE = {
    "24 names (every day)": {"json_schema": SCHEMA},
    "string, maxLength 100000": {"json_schema": {"type": "string", "maxLength": 100_000}},
    "array, maxItems 100000": {"json_schema": {"type": "array", "items": {"type": "integer"}, "maxItems": 100_000}},
    "pattern ^a{0,60000}$": {"json_schema": {"type": "string", "pattern": "^a{0,60000}$"}},
    "pattern, nested ambiguous stars": {"json_schema": {"type": "string",
                                                        "pattern": "^((a|a)*(a|a)*)*(b|b)*((c|c)*)*$"}},
    "pattern, words and digits": {"json_schema": {"type": "string", "pattern": "^([a-z]{1,3}[0-9]?[ ,.]?){0,4000}$"}},
    "grammar, stacks doubling per level": {"gbnf": 'root ::= x0 "b"\n' + "\n".join(
        f'x{i} ::= "a" x{i + 1} | "a" x{i + 1} | ""' for i in range(60)) + '\nx60 ::= "a"'},
    "grammar, any JSON": {"gbnf": 'root ::= v\nv ::= o | a | s | n\no ::= "{" (s ":" v ("," s ":" v)*)? "}"\n'
                                  'a ::= "[" (v ("," v)*)? "]"\ns ::= "\\"" [^"\\\\]* "\\""\nn ::= [0-9]+'},
}


def mask_costs(steps: int = 200) -> None:
    """Per grammar and vocabulary: compile time, and the median and worst time of one token's mask along an
    answer that takes, at each step, the allowed token with the longest text that does not end it (it walks
    deepest into the grammar's lexer)."""
    import time

    import llama_cpp
    import numpy as np

    from tests.model_files import gguf_path
    from xitui.backends import guidance
    from xitui.core.specs import bundled
    files = {"SmolLM2 (49k)": bundled._package_dir(bundled.SMOLLM_PACKAGE) / bundled.SMOLLM_FILE,
             "Gemma 3 (262k)": gguf_path()}
    print(f"{'grammar':<36} {'vocabulary':<15} {'compile':>8} {'median':>8} {'worst':>8}  tokens")
    overall = 0.0
    for vocab_name, path in files.items():
        model = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
        tok = guidance.llama_tokenizer(llama_cpp.llama_model_get_vocab(model._model.model))
        lengths = np.array([len(tok.decode_bytes([t])) for t in range(tok.vocab_size)])
        for name, constraint in HOSTILE.items():
            start = time.perf_counter()
            guide = guidance.Guide(tok, guidance.compile_for(constraint, tok))
            compiled = time.perf_counter() - start
            times, ended = [], ""
            for _ in range(steps):
                start = time.perf_counter()
                try:
                    mask = guide.allowed()
                except guidance.RequestError as exc:  # a limit reached: that answer ends with the reason
                    times.append(time.perf_counter() - start)
                    ended = f" (then ended: {str(exc).split(': ', 1)[1][:40]})"
                    break
                times.append(time.perf_counter() - start)
                ids = np.nonzero(guidance.guide_bits(mask, tok.vocab_size))[0]
                ranked = ids[np.argsort(-lengths[ids])]
                # the longest that does not end the answer (a closing quote would end most of these at once)
                pick = next((int(t) for t in ranked[:64] if _goes_on(guide, int(t))), int(ranked[0]))
                guide.take(pick)
                if guide.done:
                    break
            overall = max(overall, max(times))
            print(f"{name:<36} {vocab_name:<15} {compiled * 1000:6.1f} ms {common.median(times) * 1000:5.2f} ms "
                  f"{max(times) * 1000:5.2f} ms  {len(times)}{ended}")
        model.close()
    print(f"worst mask of any: {overall * 1000:.1f} ms a token")


def _goes_on(guide: object, token: int) -> bool:
    trial = guide.matcher.deep_copy()  # type: ignore[attr-defined]
    return trial.consume_token(token) and not trial.is_stopped() and not trial.is_accepting()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--masks", action="store_true", help="only the mask work of hostile grammars")
    args = parser.parse_args()
    if args.masks:
        return mask_costs()
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
                client.launch_model(model_name=name, model_uid=uid, model_format="pytorch", model_engine="transformers")
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
