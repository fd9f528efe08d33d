"""GGUF serving through xitui vs llama-cpp-python in-process, rounds interleaved in one run.

    python bench/serve_gguf.py [--rounds 5] [--tokens 128]

Starts a real xitui server (temporary XITUI_HOME) on a free port, launches the bundled gemma-3-270m
GGUF, and compares per round: streaming tokens/s and time to first token through the server (HTTP +
SSE, measured by the client) against the same model, prompt, context size, thread count and greedy
sampling called directly. Then launch-to-ready time and `xitui registrations` wall time.
Targets (issue 23, DESIGN.md): >= 0.99 x direct tokens/s, TTFT <= direct + 5 ms, launch <= 1.5 s,
registrations <= 250 ms. With XITUI_XINFERENCE_URL naming a running Xinference cluster
(`scripts/xinference-cluster start`), the same model runs there too, rounds interleaved, and its figures
print beside xitui's: the engine users would move to, measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROMPT = "Write a long story about a lighthouse keeper and the sea. Once upon a time,"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(start_stream) -> tuple[float, float, int]:
    """Time to the first text, decode tokens/s after it, and pieces, for a stream of completion chunks."""
    start = time.perf_counter()
    first = None
    count = 0
    for chunk in start_stream():
        if chunk["choices"][0]["text"]:
            if first is None:
                first = time.perf_counter()
            count += 1
    end = time.perf_counter()
    return first - start, (count - 1) / (end - first), count


def direct_round(llm, tokens: int) -> tuple[float, float, int]:
    return timed(lambda: llm.create_completion(PROMPT, max_tokens=tokens, temperature=0.0, stream=True,
                                               logit_bias={llm.token_eos(): -1e9}))


def server_round(handle, tokens: int) -> tuple[float, float, int]:
    return timed(lambda: handle.generate(PROMPT, {"max_tokens": tokens, "temperature": 0.0, "stream": True,
                                                  "ignore_eos": True}))


def xinference_handle(gguf: Path, context: int) -> tuple[object, object] | None:
    """The bundled GGUF launched on the Xinference cluster named by XITUI_XINFERENCE_URL, and its cleanup."""
    url = os.environ.get("XITUI_XINFERENCE_URL")
    if not url:
        return None
    import json

    from xitui.client import Client

    cluster = Client(url)
    spec = {"version": 2, "context_length": context, "model_name": "bench-xi-gemma", "model_lang": ["en"],
            "model_ability": ["generate"], "model_family": "other",
            "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_27", "quantization": "q4_k_m",
                             "model_file_name_template": "gemma-3-270m-{quantization}.gguf",
                             "model_uri": f"file://{gguf.parent}"}]}
    cluster.register_model("LLM", json.dumps(spec))
    uid = cluster.launch_model(model_name="bench-xi-gemma")

    def cleanup() -> None:
        cluster.terminate_model(uid)
        cluster.unregister_model("LLM", "bench-xi-gemma")

    return cluster.get_model(uid), cleanup


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="xitui-bench-"))
    os.environ["XITUI_HOME"] = str(home)
    os.environ["XITUI_CONFIG"] = str(home / "config.toml")
    from xitui.backends.device import default_threads
    from xitui.client import Client
    from xitui.core.specs import bundled
    bundled.prepare("demo-gemma3-270m", lambda p, s: None)
    gguf = bundled.cache_dir() / "models" / bundled.GEMMA_FILE
    threads = default_threads()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, "-m", "xitui.server", "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.02)
        client = Client(url)

        launches = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            uid = client.launch_model(model_name="demo-gemma3-270m")
            launches.append(time.perf_counter() - start)
            client.terminate_model(uid)
        uid = client.launch_model(model_name="demo-gemma3-270m")
        handle = client.get_model(uid)
        context = client.describe_model(uid)["context_length"]

        import llama_cpp

        llm = llama_cpp.Llama(model_path=str(gguf), n_ctx=context, n_threads=threads, n_threads_batch=threads,
                              verbose=False)
        xinference = xinference_handle(gguf, context)
        direct_round(llm, 8)  # warm the paths once
        server_round(handle, 8)
        rows: dict[str, list[tuple[float, float, int]]] = {"direct": [], "server": []}
        if xinference is not None:
            server_round(xinference[0], 8)
            rows["xinference"] = []
        for _ in range(args.rounds):
            rows["direct"].append(direct_round(llm, args.tokens))
            rows["server"].append(server_round(handle, args.tokens))
            if xinference is not None:
                rows["xinference"].append(server_round(xinference[0], args.tokens))
        llm.close()
        if xinference is not None:
            xinference[1]()

        script = Path(sys.executable).with_name("xitui")
        regs = []
        for _ in range(args.rounds * 2):
            start = time.perf_counter()
            subprocess.run([str(script), "registrations", "-e", url], stdout=subprocess.DEVNULL, check=True)
            regs.append(time.perf_counter() - start)
        import psutil

        server_rss = psutil.Process(server.pid).memory_info().rss
        client.terminate_model(uid)
    finally:
        server.terminate()
        server.wait()

    def med(name: str, index: int) -> float:
        return statistics.median(r[index] for r in rows[name])

    print(f"model: gemma-3-270m Q4_K_M, context {context}, {threads} threads, {args.tokens} tokens, "
          f"{args.rounds} rounds, greedy")
    print(f"{'':28} {'direct':>10} {'server':>10} {'ratio / diff':>14}")
    d_tps, s_tps = med("direct", 1), med("server", 1)
    d_ttft, s_ttft = med("direct", 0) * 1000, med("server", 0) * 1000
    print(f"{'streaming tokens/s':28} {d_tps:10.1f} {s_tps:10.1f} {s_tps / d_tps:13.3f}x   (target >= 0.99)")
    print(f"{'time to first token (ms)':28} {d_ttft:10.1f} {s_ttft:10.1f} {s_ttft - d_ttft:+12.1f}ms   (target <= +5)")
    print(f"{'tokens per round':28} {med('direct', 2):10.0f} {med('server', 2):10.0f}")
    if "xinference" in rows:
        x_tps, x_ttft = med("xinference", 1), med("xinference", 0) * 1000
        print(f"{'Xinference 4.1 (llama.cpp)':28} tokens/s {x_tps:.1f}, first token {x_ttft:.1f} ms, "
              f"{med('xinference', 2):.0f} tokens per round; xitui / Xinference: {s_tps / x_tps:.3f}x tokens/s")
    print(f"launch to ready: median {statistics.median(launches):.2f} s, best {min(launches):.2f} s   (target <= 1.5)")
    print(f"server (supervisor) resident memory with the model launched: {server_rss / 2**20:.0f} MiB   (target <= 120)")
    print(f"xitui registrations: median {statistics.median(regs) * 1000:.0f} ms, best {min(regs) * 1000:.0f} ms"
          "   (target <= 250)")


if __name__ == "__main__":
    main()
