"""Many requests, one model: aggregate tokens/s at 1, 2, 4, 8, 16 concurrent streams through xitui's
batching llama.cpp worker, against the same batches driven directly through llama-cpp-python's low-level
API (llama_batch, one sequence per stream) in the same run, and against one-at-a-time serving.

    python bench/batching.py [--tokens 64] [--rounds 2]

Every stream: the same kind of short prompt (different per stream), greedy, `--tokens` tokens, EOS
ignored; a level's figure is all streams' tokens over the wall time from the first request to the last
token (prompt processing included, on both sides). Also: time to first token at 8 streams.
Targets (issue 12): >= 0.9 x direct at every level, >= 2 x the one-at-a-time figure at 8 streams.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from common import Server

LEVELS = (1, 2, 4, 8, 16)
PROMPTS = ["Once upon a time,", "The capital of France is", "def fibonacci(n):", "1, 2, 3, 4,", "Roses are red,",
           "The sea is", "My favourite food is", "In 1492,", "The best way to learn is", "Dear diary, today",
           "The recipe calls for", "In the beginning", "Breaking news:", "The weather today is",
           "My first computer was", "Once there was a king"]


def direct(llm: object, streams: int, tokens: int) -> float:
    """Aggregate tokens/s of `streams` sequences decoded together through the low-level API."""
    import llama_cpp as L

    params = L.llama_context_params()
    import ctypes

    ctypes.pointer(params)[0] = llm.context_params  # type: ignore[attr-defined]
    params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = 512 * streams, 512, 512, streams
    ctx = L.llama_init_from_model(llm._model.model, params)  # type: ignore[attr-defined]
    batch = L.llama_batch_init(512, 0, 1)
    samplers = []
    for _ in range(streams):
        chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
        L.llama_sampler_chain_add(chain, L.llama_sampler_init_greedy())
        samplers.append(chain)
    prompts = [llm.tokenize(PROMPTS[s].encode(), add_bos=True) for s in range(streams)]  # type: ignore[attr-defined]

    def put(i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
        batch.seq_id[i][0] = seq

    start = time.perf_counter()
    n, last, pos = 0, [], []
    for s, prompt in enumerate(prompts):
        for i, token in enumerate(prompt):
            put(n, token, i, s, i == len(prompt) - 1)
            n += 1
        last.append(n - 1)
        pos.append(len(prompt))
    batch.n_tokens = n
    L.llama_decode(ctx, batch)
    for _ in range(tokens):
        picked = [L.llama_sampler_sample(samplers[s], ctx, last[s]) for s in range(streams)]
        for s in range(streams):
            put(s, picked[s], pos[s], s, True)
            pos[s] += 1
            last[s] = s
        batch.n_tokens = streams
        L.llama_decode(ctx, batch)
    elapsed = time.perf_counter() - start
    for chain in samplers:
        L.llama_sampler_free(chain)
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    return streams * tokens / elapsed


def served(url: str, uid: str, streams: int, tokens: int) -> tuple[float, list[float]]:
    """Aggregate tokens/s of `streams` concurrent streams through the server, and each one's first token."""
    from xitui.client import Client

    firsts: list[float] = []
    counts: list[int] = []
    ready = threading.Barrier(streams + 1)

    def one(i: int) -> None:
        with Client(url) as own:
            ready.wait()
            begin = time.perf_counter()
            got = 0
            for chunk in own.get_model(uid).generate(PROMPTS[i], {"max_tokens": tokens, "temperature": 0,
                                                                  "ignore_eos": True, "stream": True}):
                if chunk["choices"][0]["text"] and not got:
                    firsts.append(time.perf_counter() - begin)
                got += bool(chunk["choices"][0]["text"])
            counts.append(got)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(streams)]
    for thread in threads:
        thread.start()
    ready.wait()
    start = time.perf_counter()
    for thread in threads:
        thread.join()
    return streams * tokens / (time.perf_counter() - start), firsts


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    import llama_cpp

    from tests import model_files
    from xitui.backends.device import default_threads
    from xitui.client import Client

    threads = default_threads()
    gguf = str(model_files.gguf_path())
    llm = llama_cpp.Llama(model_path=gguf, n_ctx=64, n_threads=threads, n_threads_batch=threads, verbose=False)
    server = Server()
    try:
        client = Client(server.url)
        client.launch_model(model_name="demo-gemma3-270m", model_uid="batched", context_length=512, n_parallel=16)
        client.launch_model(model_name="demo-gemma3-270m", model_uid="queued", context_length=512, n_parallel=1)
        rows = []
        ttft8: list[float] = []
        for streams in LEVELS:
            d, s = [], []
            for _ in range(args.rounds):
                d.append(direct(llm, streams, args.tokens))
                rate, firsts = served(server.url, "batched", streams, args.tokens)
                s.append(rate)
                if streams == 8:
                    ttft8 += firsts
            rows.append((streams, statistics.median(d), statistics.median(s)))
        one_at_a_time = statistics.median(served(server.url, "queued", 8, args.tokens)[0] for _ in range(args.rounds))
        print(f"gemma-3-270m Q4_K_M, {args.tokens} tokens per stream, greedy, {threads} threads, "
              f"median of {args.rounds}")
        print("streams  direct tok/s  xitui tok/s  ratio")
        for streams, d, s in rows:
            print(f"{streams:7d}  {d:12.1f}  {s:11.1f}  {s / d:5.2f} x   (target >= 0.9)")
        eight = next(s for n, _, s in rows if n == 8)
        print(f"8 streams one at a time (n_parallel 1): {one_at_a_time:.1f} tok/s; batched {eight / one_at_a_time:.2f} x "
              "(target >= 2)")
        print(f"time to first token at 8 streams: median {statistics.median(ttft8) * 1000:.0f} ms, "
              f"worst {max(ttft8) * 1000:.0f} ms")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
