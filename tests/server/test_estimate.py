"""Will it fit: the estimate against what real workers use, the refusal, and `launch --estimate-only`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import run_env, xitui_cmd
from tests.server.conftest import ServerProcess, gguf_spec
from xitui.client import Client, ClientError
from xitui.core.machine.estimate import estimate

#: gemma-3-270m: 18 layers x 1 KV head x (256 + 256) x 2 bytes (f16) per token of context
GEMMA_KV_PER_TOKEN = 18 * 1 * 512 * 2


def _measured(client: Client, uid: str) -> tuple[int, int]:
    """(estimate of the launch, the worker's resident memory after a generation)."""
    client.get_model(uid).generate("The largest animal in the world is", {"max_tokens": 32, "temperature": 0})
    desc = client.describe_model(uid)
    return desc["estimate"]["ram"], desc["memory_rss"]


@pytest.mark.parametrize(("context", "slots"), [(2048, 1), (2048, 4), (16384, 1), (4096, None)])
def test_gguf_estimate_is_within_a_quarter_of_the_worker_memory(server: ServerProcess, gguf_path: Path,
                                                                context: int, slots: int | None) -> None:
    client = Client(server.url)
    name = f"fit-gguf-{context}-{slots}"
    client.register_model("LLM", gguf_spec(name, gguf_path))
    uid = client.launch_model(model_name=name, context_length=context,
                              **({"n_parallel": slots} if slots else {}))
    try:
        desc = client.describe_model(uid)
        est = desc["estimate"]
        assert est["weights"] == gguf_path.stat().st_size
        assert est["kv_cache"] == GEMMA_KV_PER_TOKEN * context  # one cache, shared by the slots
        if slots is None:  # chosen from the machine: 8 per core (at most 16), one per 512 tokens of cache
            assert desc["slots"] == est["slots"] == min(16, 8 * psutil.cpu_count(logical=False), context // 512)
            assert est["slots_reason"].startswith("from ") and desc["slots_reason"] == est["slots_reason"]
        else:
            assert desc["slots"] == slots and est["slots_reason"] == "asked for"
        predicted, used = _measured(client, uid)
        # the estimate is a busy worker's: what a quiet one has not touched yet is the attention scores of a
        # batch of prompt tokens against a full cache, and the prompts kept in memory for later turns
        later = est["scores_per_token"] * context + est["kept"]
        assert est["scores_per_token"] == 512 * 4 * 4 and est["kept"] == GEMMA_KV_PER_TOKEN * context // 4
        assert used <= predicted, (predicted, used)
        assert abs(predicted - later - used) <= 0.25 * used, (predicted, later, used)
    finally:
        client.terminate_model(uid)


def test_pytorch_estimate_is_within_a_quarter_of_the_worker_memory(torch_gemma: tuple[ServerProcess, str]) -> None:
    """On the shared transformers Gemma (tests/server/conftest.py; 4 slots): a worker that imported torch itself
    or was forked from one that had holds the same pages (measured: 1.996 GB predicted, 1.971 GB resident)."""
    srv, uid = torch_gemma
    client = Client(srv.url)
    est = client.describe_model(uid)["estimate"]
    assert est["engine"] == "transformers" and est["weights"] == 268_098_176 * 4  # float32 on the CPU
    predicted, used = _measured(client, uid)
    assert abs(predicted - used) <= 0.25 * used, (predicted, used)


def test_a_launch_that_cannot_fit_is_refused_with_what_would(server: ServerProcess, gguf_path: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("too-big", gguf_path))
    # 172 GiB of KV cache, 2 GiB of kept prompts, 76 GiB of attention scores for a batch against all of it
    context = 10_000_000
    if psutil.virtual_memory().available > GEMMA_KV_PER_TOKEN * context:
        pytest.skip("this machine has room for a 10M-token context")
    with pytest.raises(ClientError) as caught:
        client.launch_model(model_name="too-big", context_length=context, n_parallel=1)
    assert caught.value.status_code == 409
    message = str(caught.value)
    assert "needs about 250 GiB of memory" in message and "kept prompts 2.0 GiB" in message and "is free" in message
    assert "the largest context that fits is" in message and "--force" in message
    largest = int(message.split("the largest context that fits is ")[1].split()[0])
    assert 256 <= largest < context
    assert client.list_models() == {}  # nothing started
    # the context it names does fit
    fits = client.estimate_launch("too-big", context_length=largest, n_parallel=1)
    assert fits["fits"] is True and fits["estimate"]["context_length"] == largest


def test_estimate_only_prints_the_parts_and_launches_nothing(server: ServerProcess, gguf_path: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("weigh-me", gguf_path))
    base = [*xitui_cmd(), "launch", "-n", "weigh-me", "-c", "4096", "--estimate-only", "-e", server.url]
    # (the CLI names no n_parallel: slots chosen for the machine, sharing one cache)
    shown = subprocess.run(base, capture_output=True, text=True, env=run_env(), timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "weights" in shown.stdout and "KV cache" in shown.stdout and "72.0 MiB" in shown.stdout
    assert " slots (from " in shown.stdout.splitlines()[0]
    assert shown.stdout.strip().endswith("fits")
    data = json.loads(subprocess.run([*base, "--json"], capture_output=True, text=True, env=run_env(),
                                     timeout=60).stdout)
    assert data["fits"] is True and data["estimate"]["kv_cache"] == GEMMA_KV_PER_TOKEN * 4096
    assert data["free_ram"] > 0 and data["estimate"]["device"] == "cpu"
    assert client.list_models() == {}


def test_replicas_share_the_mapped_gguf_weights(gguf_path: Path) -> None:
    """Two llama.cpp replicas on the CPU map the same file: its weights count once, the rest twice."""
    settings = {"engine": "llama.cpp", "model_path": str(gguf_path), "context_length": 2048, "n_parallel": 1}
    one = estimate(settings)
    two = estimate(settings, replicas=2)
    assert one is not None and two is not None
    assert two.ram == one.ram + (one.ram - one.weights)


def test_estimate_of_files_not_here_yet_is_none() -> None:
    assert estimate({"engine": "llama.cpp", "model_path": None, "context_length": 2048}) is None
