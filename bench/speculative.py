"""Speculative decoding (prompt lookup, `speculative: ngram`) against none, and against the engine alone.

    python bench/speculative.py [--rounds 2] [--model demo-smollm2-135m] [--streams 1 8]

One xitui server, the model launched twice (speculative "ngram" and "off"), greedy answers to three kinds of
request, each at 1 and 8 streams at once (8 variants of the request):
  (a) rewrite: a ~300-token Python block given back with one name changed;
  (b) quote: the sentences of a passage that name a place, copied out;
  (c) free: a short story (nothing to copy: drafts are refused and the lookup backs off).
A figure is tokens written a second while writing (from each stream's first token to the last one's end),
warm (each side answers once first), the sides taking turns round by round; the ratio is on/off. The direct
engine, llama-cpp-python alone in this process, writes the same requests one at a time without drafts and
with its own prompt lookup (LlamaPromptLookupDecoding). "same text": answers with drafts that are the text
without them (they may differ at a near tie: llama.cpp's CPU kernels round a token decoded beside others
differently; tests/backends/test_speculative.py holds the difference to that). Targets (issue 36): (a) >= 1.8x and (b) >= 1.4x at one
stream, (c) >= 0.98x, nothing below 0.97x at 8 streams.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import common

CODE = '''def parse_config(path):
    """Read a config file of key = value lines into a dict."""
    result = {}
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if "=" not in line:
                raise ValueError(f"line {number}: expected key = value")
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip()
    return result


def write_config(path, values):
    """Write a dict as key = value lines, sorted by key."""
    with open(path, "w") as fh:
        for key, value in sorted(values.items()):
            fh.write(f"{key} = {value}\\n")


def merge_configs(first, second):
    """The keys of both; the second's values win."""
    result = dict(first)
    result.update(second)
    return result
'''
NAMES = ("config", "settings", "options", "table", "entries", "pairs", "found", "values")
PASSAGE = ("The ferry left Portsmouth at dawn and crossed to the Isle of Wight in under an hour. Most of the "
           "passengers were walkers bound for the downs above Ventnor, where the chalk paths run along the cliffs. "
           "A storm had closed the harbour at Cowes the night before, so the boat put in at Ryde instead. From "
           "Ryde a bus climbed inland through Newport, the island's old market town, and then south to the coast. "
           "By noon the walkers had reached St Catherine's lighthouse, and by evening most of them were back in "
           "Portsmouth, tired and sunburnt.")
TOPICS = ("a lighthouse keeper", "a lost dog", "a night train", "a beekeeper", "a snowstorm", "a chess match",
          "an old map", "a street musician")


def requests(kind: str, streams: int) -> list[str]:
    """The user messages of `streams` variants of a request of this kind."""
    if kind == "rewrite":
        return [f"Rewrite this code with the variable `result` renamed to `{NAMES[i % len(NAMES)]}`. Write the "
                f"whole code, nothing else.\n\n```python\n{CODE}```" for i in range(streams)]
    if kind == "quote":
        return [f"{PASSAGE}\n\nCopy out, word for word, every sentence of the passage above that names a town"
                + (f" (answer {i + 1})." if i else ".") for i in range(streams)]
    return [f"Write a short story about {TOPICS[i % len(TOPICS)]}." for i in range(streams)]


MAX_TOKENS = {"rewrite": 400, "quote": 200, "free": 200}


def served(sdk: Any, uid: str, messages: list[str], max_tokens: int) -> tuple[float, list[str]]:
    """Tokens a second from the first token to the last stream's end, and each answer's text."""
    def one(text: str) -> tuple[float, float, int, str]:
        first, pieces, tokens = None, [], 0
        for chunk in sdk.chat.completions.create(model=uid, messages=[{"role": "user", "content": text}],
                                                 max_tokens=max_tokens, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}):
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.perf_counter()
                pieces.append(chunk.choices[0].delta.content)
            if chunk.usage:
                tokens = chunk.usage.completion_tokens
        return first or time.perf_counter(), time.perf_counter(), tokens, "".join(pieces)

    with ThreadPoolExecutor(len(messages)) as pool:
        done = list(pool.map(one, messages))
    span = max(d[1] for d in done) - min(d[0] for d in done)
    return sum(d[2] for d in done) / span, [d[3] for d in done]


def direct(llm: Any, text: str, max_tokens: int) -> float:
    """llama-cpp-python alone: tokens a second from its first token to its last."""
    first, tokens = None, 0
    for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": text}], max_tokens=max_tokens,
                                            temperature=0, stream=True):
        if chunk["choices"][0]["delta"].get("content"):
            first = first or time.perf_counter()
            tokens += 1
    return (tokens - 1) / (time.perf_counter() - (first or time.perf_counter()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--model", default="demo-smollm2-135m")
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    import openai

    from xitui.client import Client

    server = common.Server('[server]\nwarm = ["none"]\n')
    table: list[tuple[str, int, float, float, int, int, int]] = []
    try:
        client = Client(server.url)
        slots = max(args.streams)
        uids = {side: client.launch_model(model_name=args.model, model_uid=f"spec-{side}", n_parallel=slots,
                                          speculative=side) for side in ("ngram", "off")}
        path = gguf_path(client.get_model_registration("LLM", args.model))
        sdk = openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)
        for side in uids.values():  # warm: a level is measured warm
            served(sdk, side, ["Say hello."], 8)
        for kind in ("rewrite", "quote", "free"):
            for streams in args.streams:
                messages = requests(kind, streams)
                rates: dict[str, list[float]] = {"ngram": [], "off": []}
                texts: dict[str, list[str]] = {}
                for r in range(args.rounds):
                    for side in (("ngram", "off") if r % 2 == 0 else ("off", "ngram")):
                        rate, texts[side] = served(sdk, uids[side], messages, MAX_TOKENS[kind])
                        rates[side].append(rate)
                same = sum(a == b for a, b in zip(texts["ngram"], texts["off"], strict=True))
                metrics = client.describe_model(uids["ngram"])["metrics"]
                table.append((kind, streams, common.median(rates["off"]), common.median(rates["ngram"]),
                              metrics.get("drafted", 0), metrics.get("accepted", 0), same))
                print(f"{kind:8} {streams:2} streams: off {table[-1][2]:6.1f} tok/s, ngram {table[-1][3]:6.1f} "
                      f"tok/s: {table[-1][3] / table[-1][2]:.2f}x, same text {same} of {streams}", flush=True)
    finally:
        server.stop()
    lone = direct_figures(path, args.rounds) if path else {}
    print(f"\n{args.model}, greedy, {args.rounds} rounds, tokens/s while writing")
    print("| request | streams | off | ngram | ratio | drafted tokens accepted (all so far) | same text | direct | "
          "direct + its lookup |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for kind, streams, off, on, drafted, accepted, same in table:
        mine = lone.get(kind, (None, None)) if streams == 1 else (None, None)
        shown = [f"{v:.1f}" if v else "" for v in mine]
        print(f"| {kind} | {streams} | {off:.1f} | {on:.1f} | **{on / off:.2f}x** | "
              f"{accepted / drafted if drafted else 0:.0%} of {drafted} | {same} of {streams} | {shown[0]} | "
              f"{shown[1]} |")


def gguf_path(registration: dict[str, Any]) -> str | None:
    """The GGUF file a registration's first GGUF spec names, where it is on this machine."""
    from pathlib import Path

    from xitui.core.specs.spec import local_path

    for spec in registration.get("model_specs") or []:
        if spec.get("model_format") == "ggufv2" and spec.get("model_uri"):
            path = Path(local_path(spec["model_uri"]))
            if path.is_dir() and spec.get("model_file_name_template"):
                path = path / spec["model_file_name_template"].format(quantization=spec.get("quantization"))
            return str(path) if path.is_file() else None
    return None


def direct_figures(path: str, rounds: int) -> dict[str, tuple[float, float]]:
    """One stream of each request through llama-cpp-python alone, without and with its prompt lookup."""
    import llama_cpp
    from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

    plain = llama_cpp.Llama(model_path=path, n_ctx=4096, n_threads=2, verbose=False)
    looked = llama_cpp.Llama(model_path=path, n_ctx=4096, n_threads=2, verbose=False,
                             draft_model=LlamaPromptLookupDecoding(num_pred_tokens=8))
    out = {}
    for llm in (plain, looked):
        direct(llm, "Say hello.", 8)
    for kind in ("rewrite", "quote", "free"):
        text = requests(kind, 1)[0]
        a = [direct(plain, text, MAX_TOKENS[kind]) for _ in range(rounds)]
        b = [direct(looked, text, MAX_TOKENS[kind]) for _ in range(rounds)]
        out[kind] = (common.median(a), common.median(b))
    return out


if __name__ == "__main__":
    main()
