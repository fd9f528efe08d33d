"""32 concurrent single-sentence embedding clients through xitui vs one direct batched encode.

    python bench/serve_embeddings.py [--rounds 5] [--seconds 4]

Direct: sentence-transformers `encode` of 32 sentences in one batch, in this process. Server: 32
connections each sending single-sentence requests back to back to all-MiniLM-L6-v2 launched in xitui
(dynamic batching gathers them). The load comes from `wrk` (apt install wrk), a C load generator
that takes little CPU: on a 2-core machine a Python client spends more CPU per request than the server
does, and would be measuring itself. The same load from 32 asyncio+httpx clients is printed too.
Rounds interleave. Target (DESIGN.md): server >= 0.8 x direct sentences/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time

from common import Server, median

from tests.model_files import minilm_dir
from tests.server.test_embeddings import flat_spec

SENTENCES = [f"Sentence {i}: the quick brown fox jumps over the lazy dog near river bank {i % 13}." for i in range(32)]


def direct_round(model, seconds: float) -> float:
    start = time.perf_counter()
    done = 0
    while time.perf_counter() - start < seconds:
        model.encode(SENTENCES, batch_size=32)
        done += 32
    return done / (time.perf_counter() - start)


def wrk_round(url: str, uid: str, seconds: float) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        body = json.dumps({"model": uid, "input": SENTENCES[7]})
        script.write(f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\nwrk.body = {body!r}\n')
    out = subprocess.run(["wrk", "-t1", "-c32", f"-d{seconds:.0f}s", "-s", script.name, f"{url}/v1/embeddings"],
                         capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


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
    parser.add_argument("--seconds", type=float, default=4)
    parser.add_argument("--requests", type=int, default=8, help="per Python client")
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
        use_wrk = shutil.which("wrk") is not None
        # the engine users would move to, same load in the same run (XITUI_XINFERENCE_URL: a running cluster)
        cluster_url = os.environ.get("XITUI_XINFERENCE_URL") if use_wrk else None
        if cluster_url:
            cluster = Client(cluster_url)
            cluster.register_model("embedding", flat_spec("bench-xi-minilm"))
            cluster_uid = cluster.launch_model(model_name="bench-xi-minilm", model_type="embedding")
        direct, served, python_clients, xinference = [], [], [], []
        try:
            for _ in range(args.rounds):
                direct.append(direct_round(model, args.seconds))
                if use_wrk:
                    served.append(wrk_round(server.url, uid, args.seconds))
                if cluster_url:
                    xinference.append(wrk_round(cluster_url, cluster_uid, args.seconds))
                python_clients.append(asyncio.run(server_round(server.url, uid, args.requests)))
        finally:
            if cluster_url:
                cluster.terminate_model(cluster_uid)
                cluster.unregister_model("embedding", "bench-xi-minilm")
        batches = client.describe_model(uid)["metrics"]
    finally:
        server.stop()
    d = median(direct)
    print(f"all-MiniLM-L6-v2, batches of 32 sentences, {args.rounds} interleaved rounds")
    print(f"direct batched encode                   {d:8.1f} sentences/s")
    if served:
        s = median(served)
        print(f"32 wrk connections through the server   {s:8.1f} sentences/s   {s / d:.2f} x direct   (target >= 0.8)")
    else:
        print("wrk is not installed (apt install wrk): no load from a light client")
    p = median(python_clients)
    print(f"32 asyncio+httpx clients (same process) {p:8.1f} sentences/s   {p / d:.2f} x direct")
    if xinference:
        x = median(xinference)
        print(f"32 wrk connections, Xinference 4.1      {x:8.1f} sentences/s   {x / d:.2f} x direct   "
              f"(xitui / Xinference: {median(served) / x:.2f} x)")
    print(f"largest batch the worker formed: {batches['max_batch_size']} texts")
    print(f"launch to ready (embedding): median {median(launches):.2f} s")


if __name__ == "__main__":
    main()
