"""Launch to ready through xitui (warm worker on, then off) against the direct load of the same files.

    python bench/launch.py [--rounds 3]

Models: the bundled gemma-3-270m GGUF (one sequence, and the default 4 slots), the bundled MiniLM, and
the real-weights PyTorch gemma (fp32 safetensors). "Direct" runs in a fresh process of its own that has
imported what xitui's warm worker imports (untimed): the load itself, and the load plus the first call (a
one-token forward, one encode), which is what xitui's "ready" includes (its warm-up stage). xitui's
figure is the whole `launch_model` call as a client sees it: HTTP, memory check, fork or process start,
load, warm-up. Also printed: what the idle warm worker holds. Targets (issue 13): GGUF <= direct + 0.2 s,
MiniLM <= 1.0 s, PyTorch <= direct + 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import psutil
from common import Server, median

from tests.model_files import gemma_pt_dir, gguf_path

DIRECT = r'''
import json, sys, time
from xitui.backends.device import default_threads, set_torch_threads
from xitui.core.config import WARM_ENGINES
from xitui.worker.warm_worker import preload
kind, path = sys.argv[1], sys.argv[2]
threads = default_threads()
preload(list(WARM_ENGINES))
if kind.startswith("gguf"):
    import ctypes, llama_cpp
    start = time.perf_counter()
    slots = int(kind[4:] or 1)
    llm = llama_cpp.Llama(model_path=path, n_ctx=8192 if slots == 1 else 64, n_threads=threads,
                          n_threads_batch=threads, verbose=False)
    if slots > 1:  # the same context the batch engine makes: 4 sequences of 8192 tokens, one cache each
        params = llama_cpp.llama_context_params()
        ctypes.pointer(params)[0] = llm.context_params
        params.n_ctx, params.n_seq_max, params.kv_unified = 8192 * slots, slots, False
        params.n_batch = params.n_ubatch = 512
        ctx = llama_cpp.llama_init_from_model(llm._model.model, params)
    load = time.perf_counter() - start
    first = load  # llama.cpp's first decode costs what later ones do: no warm-up
elif kind == "minilm":
    set_torch_threads()
    from sentence_transformers import SentenceTransformer
    start = time.perf_counter()
    model = SentenceTransformer(path, device="cpu")
    load = time.perf_counter() - start
    model.encode(["warm-up"])
    first = time.perf_counter() - start
else:
    import torch
    set_torch_threads()
    from transformers import AutoModelForCausalLM, AutoTokenizer
    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    load = time.perf_counter() - start
    with torch.inference_mode():
        model(input_ids=torch.tensor([[tokenizer.bos_token_id]]), logits_to_keep=1)
    first = time.perf_counter() - start
print(json.dumps({"load": load, "ready": first}))
'''


def direct(kind: str, path: str) -> dict[str, float]:
    # offline, as xitui loads (local_files_only): no hub lookups that fail slowly on a closed network
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", DIRECT, kind, path], capture_output=True, text=True, check=True,
                         env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def warm_ready(client, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        warm = client.status()["warm_worker"]
        if warm["state"] in ("ready", "off"):
            return warm
        time.sleep(0.1)
    raise RuntimeError("the warm worker did not get ready")


def our_launches(client, rounds: int) -> dict[str, list[tuple[float, dict, int]]]:
    spec = {"version": 1, "context_length": 2048, "model_name": "bench-torch", "model_lang": ["en"],
            "model_ability": ["generate"], "model_family": "other",
            "model_specs": [{"model_format": "pytorch", "model_size_in_billions": "0_27",
                             "quantizations": ["none"], "model_uri": str(gemma_pt_dir())}]}
    client.register_model("LLM", json.dumps(spec))
    kinds = {
        "gguf1": dict(model_name="demo-gemma3-270m", n_parallel=1),
        "gguf4": dict(model_name="demo-gemma3-270m"),
        "minilm": dict(model_name="demo-minilm", model_type="embedding"),
        "pytorch": dict(model_name="bench-torch", model_format="pytorch", model_engine="transformers"),
    }
    rows: dict[str, list[tuple[float, dict, int]]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind, request in kinds.items():
            start = time.perf_counter()
            uid = client.launch_model(**request)
            took = time.perf_counter() - start
            info = client.describe_model(uid)
            replica = info["replicas"][0]
            uss = psutil.Process(replica["pid"]).memory_full_info().uss
            rows[kind].append((took, {"start": replica["start"], **replica["stages"]}, uss))
            client.terminate_model(uid)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    gguf = str(gguf_path())
    from xitui.core.specs import bundled
    minilm = str(bundled._minilm_dir(bundled._package_dir(bundled.MINILM_PACKAGE)))
    torch_dir = str(gemma_pt_dir())
    paths = {"gguf1": gguf, "gguf4": gguf, "minilm": minilm, "pytorch": torch_dir}

    results = {}
    warm_info = None
    for mode in ("warm", "cold"):
        os.environ["XITUI_WARM"] = "all" if mode == "warm" else "none"
        server = Server()
        try:
            from xitui.client import Client

            client = Client(server.url)
            info = warm_ready(client)
            if mode == "warm":
                mem = psutil.Process(info["pid"]).memory_full_info()
                with open(f"/proc/{info['pid']}/status") as fh:
                    anon = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("RssAnon"))
                warm_info = (info, mem.rss, mem.uss, anon)
            results[mode] = our_launches(client, args.rounds)
        finally:
            server.stop()
    directs = {kind: [direct(kind, path) for _ in range(args.rounds)] for kind, path in paths.items()}

    names = {"gguf1": "GGUF, 1 sequence of 8192", "gguf4": "GGUF, 4 slots x 8192 (default)",
             "minilm": "MiniLM (embedding)", "pytorch": "PyTorch gemma-270m fp32"}
    print(f"launch to ready, median of {args.rounds}, CPU ({os.cpu_count()} cores)")
    print(f"{'model':34s} {'direct load':>11s} {'+1st call':>9s} {'xitui warm':>10s} {'cold':>6s} "
          f"{'warm - direct':>13s}  stages (warm)")
    for kind, name in names.items():
        load = median([d["load"] for d in directs[kind]])
        ready = median([d["ready"] for d in directs[kind]])
        warm = median([r[0] for r in results["warm"][kind]])
        cold = median([r[0] for r in results["cold"][kind]])
        stages = results["warm"][kind][-1][1]
        shown = " ".join(f"{k} {v:.2f}" if isinstance(v, float) else str(v) for k, v in stages.items())
        print(f"{name:34s} {load:10.2f}s {ready:8.2f}s {warm:9.2f}s {cold:5.2f}s {warm - ready:+12.2f}s  {shown}")
    if warm_info is not None:
        info, rss, uss, anon = warm_info
        print(f"idle warm worker ({', '.join(info['loaded'])}): RSS {rss / 2**20:.0f} MiB, private (USS) "
              f"{uss / 2**20:.0f} MiB, anonymous {anon / 2**20:.0f} MiB; imports took {info['import_seconds']:.1f} s")
    for kind in ("minilm", "pytorch"):
        warm_uss = median([r[2] for r in results["warm"][kind]])
        cold_uss = median([r[2] for r in results["cold"][kind]])
        print(f"{names[kind]} worker private memory (USS): forked {warm_uss / 2**20:.0f} MiB, "
              f"cold {cold_uss / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
