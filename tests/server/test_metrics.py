"""GET /metrics: Prometheus' text format, read back with Prometheus' own parser; the counters move by exactly
what a test sends."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.server.conftest import ServerProcess, gguf_spec
from tests.support.models import launched
from xitui.client import Client


def scrape(url: str, **headers: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Sample name -> labels -> value."""
    answer = httpx.get(f"{url}/metrics", headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get(name, {}).get(tuple(sorted(labels.items())), 0.0)


def test_counters_move_by_the_requests_and_tokens_sent(server: ServerProcess, small_gguf: Path) -> None:
    client = Client(server.url)
    with launched(client, "metered", gguf_spec("metered", small_gguf), n_parallel=2):
        model = client.get_model("metered")
        before = scrape(server.url)
        replica = {"model": "metered", "replica": "0"}
        assert value(before, "xitui_requests_total", **replica) == 0
        assert value(before, "xitui_slots", **replica) == 2
        assert value(before, "xitui_model_ready", model="metered", model_name="metered", engine="llama.cpp") == 1
        assert value(before, "xitui_launches_total", start="warm", result="ready") + \
            value(before, "xitui_launches_total", start="cold", result="ready") == 1
        assert value(before, "xitui_worker_resident_memory_bytes", **replica) > 100 * 2**20
        assert value(before, "xitui_kv_cache_cells", **replica) == 2048

        prompt, generated = 0, 0
        for text, tokens in (("The capital of France is", 5), ("Once upon a time,", 9), ("1, 2, 3,", 3)):
            answer = model.generate(text, {"max_tokens": tokens, "temperature": 0, "ignore_eos": True})
            prompt += answer["usage"]["prompt_tokens"]
            generated += answer["usage"]["completion_tokens"]
        after = scrape(server.url)
        assert value(after, "xitui_requests_total", **replica) == 3
        assert value(after, "xitui_prompt_tokens_total", **replica) == prompt
        assert value(after, "xitui_generated_tokens_total", **replica) == generated == 17
        assert value(after, "xitui_time_to_first_token_seconds_count", **replica) == 3
        assert value(after, "xitui_time_to_first_token_seconds_bucket", le="+Inf", **replica) == 3
        assert value(after, "xitui_time_per_output_token_seconds_count", **replica) == generated - 3
        assert value(after, "xitui_requests_running", **replica) == 0
        assert value(after, "xitui_requests_queued", **replica) == 0
        assert value(after, "xitui_request_errors_total", **replica) == 0
        # the last answer's own cells were in use as it ended: its prompt and all it wrote but the last token
        last = answer["usage"]
        assert value(after, "xitui_kv_cache_cells_used", **replica) >= last["prompt_tokens"] + last["completion_tokens"] - 1
        assert value(after, "xitui_kv_cache_cells_used", **replica) <= 2048

    gone = scrape(server.url)
    assert value(gone, "xitui_unloads_total", reason="terminated") == \
        value(after, "xitui_unloads_total", reason="terminated") + 1
    # its series went with it: a server launching a new uid per job does not keep a series of each
    assert not [name for name, series in gone.items() for labels in series if ("model", "metered") in labels]


def test_the_api_key_guards_metrics(tmp_path: Path) -> None:
    srv = ServerProcess(tmp_path, api_key="s3cret")
    try:
        assert httpx.get(f"{srv.url}/metrics").status_code == 401
        assert "xitui_launches_total" not in scrape(srv.url, Authorization="Bearer s3cret")  # no launch: no sample
    finally:
        srv.stop()


def test_speculative_drafts_are_counted_where_describe_metrics_and_the_dashboard_read_them(
        server: ServerProcess, small_gguf: Path) -> None:
    """A launch with `speculative: ngram` says so in describe; a greedy answer that copies its prompt is
    written with drafts, and describe, /metrics and the dashboard's detail line count them the same; a
    sampled answer drafts nothing."""
    from xitui.tui.data import model_detail

    client = Client(server.url)
    code = "\n".join(f"    total_{i} = compute_value(items[{i}], scale={i})" for i in range(12))
    with launched(client, "drafty", gguf_spec("drafty", small_gguf), n_parallel=2, speculative="ngram"):
        assert client.describe_model("drafty")["speculative"] == "ngram"
        model = client.get_model("drafty")
        model.chat([{"role": "user", "content": f"Repeat this code exactly:\n{code}"}],
                   generate_config={"max_tokens": 120, "temperature": 0})
        metrics = client.describe_model("drafty")["metrics"]
        assert metrics["drafted"] > 0 and 0 < metrics["accepted"] <= metrics["drafted"], metrics
        samples = scrape(server.url)
        replica = {"model": "drafty", "replica": "0"}
        assert value(samples, "xitui_draft_tokens_total", **replica) == metrics["drafted"]
        assert value(samples, "xitui_draft_tokens_accepted_total", **replica) == metrics["accepted"]
        shown = f"{metrics['accepted'] / metrics['drafted']:.0%} of {metrics['drafted']} accepted"
        assert shown in model_detail("drafty", client.describe_model("drafty"))
        model.chat([{"role": "user", "content": f"Repeat this code exactly:\n{code}"}],
                   generate_config={"max_tokens": 60, "temperature": 0.8, "seed": 1})
        assert client.describe_model("drafty")["metrics"]["drafted"] == metrics["drafted"]
