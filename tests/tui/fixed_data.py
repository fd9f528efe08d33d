"""A fixed reading of a server, for snapshot tests: three models, one GPU, a few registrations."""

from __future__ import annotations

from xitui.tui.data import Snapshot

NOW = 1_790_000_000.0


def fixed_snapshot() -> Snapshot:
    models = {
        "demo-gemma3-270m": {
            "model_name": "demo-gemma3-270m", "model_type": "LLM", "model_engine": "llama.cpp",
            "model_format": "ggufv2", "quantization": "q4_k_m", "model_ability": ["generate", "chat"],
            "state": "ready", "device": "gpu", "pid": 4242, "memory_rss": 412 * 2**20, "launched_at": NOW - 600,
            "speculative": "ngram",
            "metrics": {"requests": 17, "in_flight": 0, "last_ttft": 0.034, "last_tokens_per_s": 41.7,
                        "last_used": NOW - 75, "drafted": 480, "accepted": 297},
        },
        "qwen-7b": {
            "model_name": "qwen2.5-7b-custom", "model_type": "LLM", "model_engine": "transformers",
            "model_format": "pytorch", "quantization": "none", "model_ability": ["chat"],
            "state": "launching", "progress": 0.45, "stage": "downloading 1520.0 of 3390.5 MiB", "pid": 4300,
            "memory_rss": 96 * 2**20, "launched_at": NOW - 20, "metrics": {"requests": 0, "in_flight": 0},
        },
        "demo-minilm": {
            "model_name": "demo-minilm", "model_type": "embedding", "model_engine": "sentence_transformers",
            "model_format": "pytorch", "quantization": "none", "state": "error",
            "error": "the worker process killed by signal 9", "pid": None, "dimensions": 384,
            "metrics": {"requests": 3, "in_flight": 0},
        },
    }
    resources = {
        "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "memory_total": 80 * 2**30,
                  "memory_used": 22 * 2**30, "memory_free": 58 * 2**30, "utilization": 37,
                  "processes": [{"pid": 4242, "memory_used": 640 * 2**20, "model_uid": "demo-gemma3-270m"},
                                {"pid": 999, "memory_used": 20 * 2**30, "model_uid": None}]}],
        "gpu_note": None,
        "memory": {"total": 24 * 2**30, "available": 15 * 2**30, "used": 9 * 2**30},
        "cpu_count": 2, "cpu_percent": 12.5,
    }
    registrations = [
        {"model_name": "llama-2-chat", "model_type": "LLM", "is_builtin": True, "model_ability": ["chat"],
         "model_specs": [{"model_format": "pytorch", "quantization": "none"}]},
        {"model_name": "demo-gemma3-270m", "model_type": "LLM", "is_builtin": True,
         "model_ability": ["generate", "chat"], "context_length": 8192,
         "model_specs": [{"model_format": "ggufv2", "quantization": "q4_k_m", "model_size_in_billions": "0_27"}]},
        {"model_name": "my-gemma", "model_type": "LLM", "is_builtin": False, "persisted": True,
         "model_ability": ["generate"], "context_length": 4096,
         "model_specs": [{"model_format": "ggufv2", "quantization": "Q4_K_M", "model_size_in_billions": "0_27"},
                         {"model_format": "ggufv2", "quantization": "Q8_0", "model_size_in_billions": "0_27"}]},
        {"model_name": "demo-minilm", "model_type": "embedding", "is_builtin": True, "dimensions": 384,
         "model_specs": [{"model_format": "pytorch", "quantization": "none"}]},
    ]
    return Snapshot(models=models, resources=resources, registrations=registrations, taken_at=NOW)
