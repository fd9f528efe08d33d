"""What the same-user check costs: a server that asks the kernel who owns each loopback connection (the
default) against one told to serve other users (`server.allow_other_users = true`), rounds interleaved.

    python bench/peer_check.py [--rounds 5] [--connections 300] [--tokens 128]

1. The lookup itself (xitui/core/machine/peers.py, sock_diag netlink), in this process: microseconds per call.
2. New connections: each sends one `GET /v1/cluster/version` with `Connection: close` over a fresh socket;
   median wall time per connection, check on vs off.
3. Keep-alive streaming: the bundled GGUF (one slot) streams `--tokens` greedy tokens per round over one
   kept-alive connection; tokens/s, check on vs off.
Targets (DESIGN.md): <= 1 ms per new connection, >= 0.98 x on keep-alive streaming.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import Server  # noqa: E402

PROMPT = "Write a long story about a lighthouse keeper and the sea. Once upon a time,"


def lookup_cost(calls: int) -> float:
    """Microseconds per peer_uid() call on a live loopback connection."""
    from xitui.core.machine import peers
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    client = socket.create_connection(listener.getsockname())
    accepted, address = listener.accept()
    start = time.perf_counter()
    for _ in range(calls):
        assert peers.peer_uid(address, accepted.getsockname()) == os.getuid()
    took = time.perf_counter() - start
    for sock in (client, accepted, listener):
        sock.close()
    return took / calls * 1e6


REQUEST = b"GET /v1/cluster/version HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


def connection_round(port: int, count: int) -> float:
    """Median seconds for a new connection's one request, connect to close."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(REQUEST)
            data = b""
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        times.append(time.perf_counter() - start)
        assert data.startswith(b"HTTP/1.1 200"), data[:100]
    return statistics.median(times)


def stream_round(handle, tokens: int) -> float:
    start = first = None
    count = 0
    start = time.perf_counter()
    for chunk in handle.generate(PROMPT, {"max_tokens": tokens, "temperature": 0.0, "stream": True,
                                          "ignore_eos": True}):
        if chunk["choices"][0]["text"]:
            if first is None:
                first = time.perf_counter()
            count += 1
    end = time.perf_counter()
    assert first is not None and start is not None
    return (count - 1) / (end - first)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    from tests import model_files
    from xitui.client import Client

    print(f"peer_uid lookup: {lookup_cost(5000):.1f} µs per call")
    gguf = model_files.gguf_path()
    os.environ.setdefault("XITUI_WARM", "llama.cpp")
    servers = {"check on": Server("[server]\nallow_other_users = false\n"),
               "check off": Server("[server]\nallow_other_users = true\n")}
    try:
        handles = {}
        for name, srv in servers.items():
            client = Client(srv.url)
            client.register_model("LLM", _spec(gguf))
            handles[name] = client.get_model(client.launch_model(model_name="peer-bench", n_parallel=1))
            stream_round(handles[name], 16)  # warm
        conn: dict[str, list[float]] = {name: [] for name in servers}
        rate: dict[str, list[float]] = {name: [] for name in servers}
        for _ in range(args.rounds):
            for name, srv in servers.items():
                conn[name].append(connection_round(srv.port, args.connections))
                rate[name].append(stream_round(handles[name], args.tokens))
        on_c, off_c = statistics.median(conn["check on"]), statistics.median(conn["check off"])
        on_r, off_r = statistics.median(rate["check on"]), statistics.median(rate["check off"])
        print(f"new connection + one request: check on {on_c * 1000:.3f} ms, off {off_c * 1000:.3f} ms, "
              f"difference {(on_c - off_c) * 1000:+.3f} ms (target <= 1 ms)")
        print(f"keep-alive streaming: check on {on_r:.1f} tok/s, off {off_r:.1f} tok/s, "
              f"{on_r / off_r:.3f} x (target >= 0.98 x)")
    finally:
        for srv in servers.values():
            srv.stop()


def _spec(gguf: Path) -> str:
    import json

    return json.dumps({
        "version": 2, "model_name": "peer-bench", "model_ability": ["generate"], "context_length": 2048,
        "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": "0_27", "quantization": "q4_k_m",
                         "model_file_name_template": gguf.name, "model_uri": f"file://{gguf.parent}"}],
    })


if __name__ == "__main__":
    main()
