"""Concurrent generation throughput: one replica vs two, against llama-cpp-python called directly.

    python bench/replicas.py [--rounds 3] [--clients 8] [--tokens 48]

A real xitui server launches the bundled gemma-3-270m GGUF twice: uid `one` (1 worker, all physical
cores) and uid `two` (`--replica 2`, the cores shared out between the workers). Each round, `--clients`
threads each ask for one completion of `--tokens` tokens (greedy, no early stop) at once; throughput is
completion tokens over the round's wall time. The baseline is the same requests run one after another on
the model loaded in this process (all cores): what a single llama.cpp instance does with them. Rounds are
interleaved so the three share the machine's state. Also prints each launch's memory estimate beside the
workers' resident memory.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

from common import Server, median

PROMPT = "Write a short story about a lighthouse keeper. Once upon a time,"


def through_server(url: str, uid: str, clients: int, tokens: int) -> float:
    from xitui.client import Client

    def one(_: int) -> int:
        with Client(url) as own:
            done = own.get_model(uid).generate(PROMPT, {"max_tokens": tokens, "temperature": 0, "ignore_eos": True})
        return done["usage"]["completion_tokens"]

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        produced = sum(pool.map(one, range(clients)))
    return produced / (time.perf_counter() - start)


def direct(llm: object, clients: int, tokens: int) -> float:
    start = time.perf_counter()
    produced = 0
    for _ in range(clients):
        done = llm.create_completion(PROMPT, max_tokens=tokens, temperature=0.0,  # type: ignore[attr-defined]
                                     logit_bias={llm.token_eos(): -1e9})  # type: ignore[attr-defined]
        produced += done["usage"]["completion_tokens"]
    return produced / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=48)
    args = parser.parse_args()

    import llama_cpp

    from tests import model_files
    from xitui.backends.device import default_threads
    from xitui.client import Client

    gguf = model_files.gguf_path()
    context = 2048
    server = Server()
    try:
        client = Client(server.url)
        client.launch_model(model_name="demo-gemma3-270m", model_uid="one", context_length=context)
        client.launch_model(model_name="demo-gemma3-270m", model_uid="two", context_length=context, replica=2)
        threads = default_threads()
        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=context, n_threads=threads, n_threads_batch=threads,
                              verbose=False)
        results: dict[str, list[float]] = {"direct": [], "one": [], "two": []}
        for _ in range(args.rounds):
            results["direct"].append(direct(llm, args.clients, args.tokens))
            results["one"].append(through_server(server.url, "one", args.clients, args.tokens))
            results["two"].append(through_server(server.url, "two", args.clients, args.tokens))
        base = median(results["direct"])
        print(f"{args.clients} concurrent completions of {args.tokens} tokens, {args.rounds} rounds, "
              f"{threads} physical cores")
        print(f"  direct llama-cpp-python, one after another : {base:7.1f} tok/s  1.00 x")
        for uid, label in (("one", "xitui, 1 replica"), ("two", "xitui, 2 replicas")):
            value = median(results[uid])
            print(f"  {label:<43}: {value:7.1f} tok/s  {value / base:.2f} x")
        print(f"  2 replicas over 1: {median(results['two']) / median(results['one']):.2f} x")
        for uid in ("one", "two"):
            desc = client.describe_model(uid)
            shares = [r["metrics"]["requests"] for r in desc["replicas"]]
            print(f"  {uid}: estimate {desc['estimate']['ram'] / 2**20:.0f} MiB (weights mapped once), workers' "
                  f"RSS {desc['memory_rss'] / 2**20:.0f} MiB (mapped pages counted per worker); "
                  f"requests per replica {shares}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
