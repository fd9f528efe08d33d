"""32 concurrent single-sentence embedding clients through xitui vs one direct batched encode.

    python bench/serve_embeddings.py [--rounds 5] [--requests 8]

Direct: sentence-transformers `encode` of 32 sentences in one batch, in this process. Server: 32
clients (asyncio + httpx, one connection each) each sending `--requests` single-sentence requests back
to back to all-MiniLM-L6-v2 launched in xitui (dynamic batching gathers them). Rounds interleave.
Target (DESIGN.md): server >= 0.8 x direct sentences/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from common import Server, median

from tests.model_files import minilm_dir

SENTENCES = [f"Sentence {i}: the quick brown fox jumps over the lazy dog near river bank {i % 13}." for i in range(32)]


def direct_round(model, rounds: int) -> float:
    start = time.perf_counter()
    for _ in range(rounds):
        model.encode(SENTENCES, batch_size=32)
    return 32 * rounds / (time.perf_counter() - start)


async def server_round(url: str, uid: str, requests: int) -> float:
    import httpx

    async def client(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            for _ in range(requests):
                r = await http.post("/v1/embeddings", json={"model": uid, "input": SENTENCES[i]})
                r.raise_for_status()

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(32)))
    return 32 * requests / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=8)
    args = parser.parse_args()
    server = Server()
    try:
        from xitui.backends.device import set_torch_threads
        from xitui.client import Client

        client = Client(server.url)
        spec = {"model_name": "bench-minilm", "dimensions": 384, "max_tokens": 256, "language": ["en"],
                "model_uri": str(minilm_dir())}
        client.register_model("embedding", json.dumps(spec))
        launches = []
        for _ in range(3):
            start = time.perf_counter()
            uid = client.launch_model(model_name="bench-minilm", model_type="embedding")
            launches.append(time.perf_counter() - start)
            client.terminate_model(uid)
        uid = client.launch_model(model_name="bench-minilm", model_type="embedding")

        set_torch_threads()
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(str(minilm_dir()), device="cpu")
        direct_round(model, 1)
        asyncio.run(server_round(server.url, uid, 1))
        direct, served = [], []
        for _ in range(args.rounds):
            direct.append(direct_round(model, args.requests))
            served.append(asyncio.run(server_round(server.url, uid, args.requests)))
        batches = client.describe_model(uid)["metrics"]
    finally:
        server.stop()
    d, s = median(direct), median(served)
    print(f"all-MiniLM-L6-v2, 32 sentences, {args.rounds} rounds x {args.requests} requests per client")
    print(f"direct batched encode      {d:8.1f} sentences/s")
    print(f"32 clients through server  {s:8.1f} sentences/s   {s / d:.2f} x direct   (target >= 0.8)")
    print(f"largest batch the worker formed: {batches['max_batch_size']} texts")
    print(f"launch to ready (embedding): median {median(launches):.2f} s")


if __name__ == "__main__":
    main()
