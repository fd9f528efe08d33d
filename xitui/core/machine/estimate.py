"""How much memory a launch needs, from the spec and the files' headers (no weights read), and whether that
fits in what the machine has free.

The parts, each stated so a user can check them:
- weights: a GGUF file's size; for PyTorch, parameters (safetensors headers) x bytes per weight for the
  dtype the backend loads (float32 on the CPU, the config's dtype on a GPU, 1 or 0.5 byte for 8-/4-bit);
- KV cache: 2 (K and V) x layers x KV heads x head size x context length x bytes per value (llama.cpp
  keeps f16 in one cache its slots share; transformers the model's dtype), from GGUF metadata or
  config.json;
- overhead: the engine's working buffers (llama.cpp: 64 MiB + 5 % of the weights for its compute graph,
  and a row of logits per slot: vocabulary x 4 bytes; and llguidance's view of the vocabulary, which
  holds answers to grammars: 640 bytes a token, measured: 158 MiB for Gemma 3's 262k tokens);
  transformers and sentence-transformers: 20 % of the weights + 128 MiB for activations and the allocator,
  the rule of thumb accelerate's `estimate-memory` states for inference);
- runtime: the worker process with its library imported, before any model (measured on the build machine:
  python + llama_cpp 41 MiB, python + torch + transformers 243 MiB);
- on a GPU, the CUDA runtime: each worker's CUDA context and its libraries' workspaces (cuBLAS...), 512 MiB
  for torch (an H100 worker held 1082 MiB for 361 MiB of weights and cache, 197 MiB of stated overhead)
  and 256 MiB for llama.cpp (its own smaller set of CUDA libraries; not measured).

A GGUF file is memory-mapped: replicas on the CPU share its pages, so its weights count once.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xitui.core.errors import XituiError

# imported here, not in the functions that use them: two launches weighed at once on two threads could
# otherwise import them together and trip the import lock's deadlock check
from xitui.core.model_files.bounded_reads import read_json
from xitui.core.model_files.inspect.gguf_header import read_header
from xitui.core.model_files.inspect.local import safetensors_parameters
from xitui.core.units import human_bytes

if TYPE_CHECKING:  # annotations only: the CLI does not import the wire's types to start
    from xitui import wire

MIB = 2**20
#: A worker's memory before it loads a model: Python and the engine's libraries (RSS after the worker's imports,
#: measured with llama-cpp-python 0.3, torch 2.13 and transformers 5.24 on the build machine).
RUNTIME = {"llama.cpp": 43 * MIB, "transformers": 440 * MIB, "sentence_transformers": 490 * MIB}
CUDA_RUNTIME = {"llama.cpp": 256 * MIB, "transformers": 512 * MIB, "sentence_transformers": 512 * MIB}
DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2}


#: Host memory the llama.cpp engine keeps finished answers' cells in, for a next turn that starts with them, as a
#: share of its KV cache (backends/llamacpp_batch.py: they leave the shared cache while others run).
KEPT_SHARE = 0.25
#: ... and no more than this (llama.cpp's server keeps up to 8 GiB of prompts with --cache-ram).
KEPT_MAX = 2 * 2**30
#: Prompt tokens the llama.cpp engine decodes in one step (llama.cpp's n_batch and n_ubatch).
LLAMA_BATCH_TOKENS = 512


@dataclass
class Estimate:
    """Bytes a launch needs; `ram` and `gpu` say where (per replica, except weights shared by mmap)."""

    engine: str
    context_length: int | None
    weights: int
    kv_cache: int
    overhead: int
    runtime: int
    replicas: int = 1
    #: Bytes of KV cache per token of context (0 for embedding models): what the largest context uses.
    kv_per_token: int = 0
    #: "cpu" or "gpu": where weights and cache go (the runtime always takes RAM).
    device: str = "cpu"
    #: Fraction of the weights on the GPU (llama.cpp's n_gpu_layers may offload only some layers).
    gpu_fraction: float = 0.0
    shared_weights: bool = False
    #: Each worker's CUDA context and library workspaces, on the GPU (0 on the CPU).
    gpu_runtime: int = 0
    #: Requests decoded together in one shared KV cache (llama.cpp's n_parallel), and why that many.
    slots: int = 1
    slots_reason: str = ""
    #: Tokens of the model's vocabulary (a logits row per slot: vocab x 4 bytes).
    vocab: int = 0
    #: Bytes of llama.cpp's compute buffer (in `overhead`) per token of context: a batch's attention scores.
    scores_per_token: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def kept(self) -> int:
        """Bytes of finished answers' cells kept in system memory (llama.cpp: KEPT_SHARE of its cache, at most
        KEPT_MAX)."""
        return min(int(KEPT_SHARE * self.kv_cache), KEPT_MAX) if self.engine == "llama.cpp" else 0

    @property
    def per_replica(self) -> int:
        return self.weights + self.kv_cache + self.kept + self.overhead + self.runtime

    @property
    def gpu(self) -> int:
        """Bytes every replica needs on the GPU(s)."""
        if self.device != "gpu":
            return 0
        return self.replicas * int(self.weights * self.gpu_fraction + self.kv_cache + self.overhead + self.gpu_runtime)

    @property
    def ram(self) -> int:
        """Bytes the replicas need in system memory."""
        if self.device == "gpu":
            host = int(self.weights * (1 - self.gpu_fraction))
            return self.replicas * (self.runtime + host + self.kept)
        weights = self.weights if self.shared_weights else self.replicas * self.weights
        return weights + self.replicas * (self.kv_cache + self.kept + self.overhead + self.runtime)

    @property
    def total(self) -> int:
        return self.ram + self.gpu

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ram=self.ram, gpu=self.gpu, total=self.total, per_replica=self.per_replica, kept=self.kept)
        return data

    def parts_text(self) -> str:
        parts = [f"weights {human_bytes(self.weights)}"]
        if self.kv_per_token:
            parts.append(f"KV cache {human_bytes(self.kv_cache)} for {self.context_length} tokens"
                         + (f" shared by {self.slots} slots" if self.slots > 1 else "")
                         + (f" ({self.slots_reason})" if self.slots_reason not in ("", "asked for") else ""))
        if self.kept:
            parts.append(f"kept prompts {human_bytes(self.kept)}")
        parts.append(f"overhead {human_bytes(self.overhead)}")
        # the parts of what the line's figure counts: GPU memory on a GPU, system memory otherwise
        parts.append(f"CUDA runtime {human_bytes(self.gpu_runtime)}" if self.device == "gpu"
                     else f"runtime {human_bytes(self.runtime)}")
        text = " + ".join(parts)
        return f"{self.replicas} x ({text})" if self.replicas > 1 else text


@dataclass
class Fit:
    """An estimate set against free memory: whether it fits, and the largest context that would."""

    estimate: Estimate
    free_ram: int
    free_gpu: int | None
    fits: bool
    largest_context: int | None

    def as_dict(self) -> dict[str, Any]:
        return {"estimate": self.estimate.as_dict(), "free_ram": self.free_ram, "free_gpu": self.free_gpu,
                "fits": self.fits, "largest_context": self.largest_context}

    def line(self) -> str:
        """One line: what it needs, what is free, and the largest context that would fit."""
        est = self.estimate
        where = "GPU memory" if est.device == "gpu" else "memory"
        need = est.gpu if est.device == "gpu" else est.ram
        free = self.free_gpu if est.device == "gpu" else self.free_ram
        text = f"needs about {human_bytes(need)} of {where} ({est.parts_text()}), {human_bytes(free)} is free"
        if not self.fits and est.kv_per_token:
            if self.largest_context:
                text += f"; the largest context that fits is {self.largest_context} tokens (--context-length)"
            else:
                text += "; it does not fit at any context length"
        return text


def check_fit(est: Estimate, free_ram: int, free_gpu: int | None) -> Fit:
    """Set an estimate against free memory (free_gpu: None when there is no GPU)."""
    on_gpu = est.device == "gpu" and free_gpu is not None
    need, free = (est.gpu, free_gpu) if on_gpu else (est.ram, free_ram)
    assert free is not None
    fits = need <= free and (not on_gpu or est.ram <= free_ram)
    largest = None
    if not fits and est.kv_per_token and est.context_length:
        # kept prompts grow with the cache, in system memory
        share = 1 + (KEPT_SHARE if est.engine == "llama.cpp" and not on_gpu else 0)
        grows = est.kv_cache + (est.kept if share > 1 else 0) + est.scores_per_token * est.context_length
        spare = free - (need - est.replicas * grows)
        tokens = spare // (est.replicas * (est.kv_per_token * share + est.scores_per_token)) if spare > 0 else 0
        tokens = min(int(tokens) // 256 * 256, est.context_length)
        largest = tokens if tokens >= 256 else None
    return Fit(est, free_ram, free_gpu, fits, largest)


# --- the parts, read from the files -------------------------------------------------------------------


def _read_json(path: Path) -> dict[str, Any]:
    return read_json(path) or {}


def _kv(layers: Any, kv_heads: Any, key_length: Any, value_length: Any, value_bytes: int) -> int:
    """KV bytes per token of context."""
    if not all(isinstance(v, int) and v > 0 for v in (layers, kv_heads, key_length, value_length)):
        return 0
    return int(layers * kv_heads * (key_length + value_length) * value_bytes)


#: Bytes a vocabulary token costs a GGUF worker for grammars: the vocabulary read alone for llguidance (43 MiB)
#: and its view of it (115 MiB), measured on Gemma 3's 262k tokens.
GRAMMAR_VOCAB_BYTES = 640


def estimate(settings: wire.Settings, *, gpu: bool = False, replicas: int = 1) -> Estimate | None:
    """The estimate for a worker's launch settings (LaunchPlan.worker_settings), or None when the files are
    not on this machine yet (a Hub model not downloaded, a bundled model not assembled).

    `gpu`: the engine will put the model on a GPU (the caller knows whether one is there and usable)."""
    path = settings.get("model_path")
    if not path or not os.path.exists(path):
        return None
    engine = settings["engine"]
    context = settings.get("context_length")
    if engine == "llama.cpp" and settings.get("model_format") == "ggmlv3":
        est = _ggml(Path(path), context)
    elif engine == "llama.cpp" and settings.get("convert_to"):
        est = _converted(Path(path), context, settings["convert_to"])
    elif engine == "llama.cpp":
        est = _gguf(Path(path), context, settings.get("n_gpu_layers"), gpu)
    elif engine == "transformers":
        est = _pytorch(Path(path), context, settings.get("quantization") or "none", gpu)
    elif engine == "sentence_transformers":
        est = _sentence_transformers(Path(path), gpu)
    else:  # the test suite's scripted engine: a script, no weights
        return None
    projector = settings.get("projector")
    if projector and os.path.isfile(projector):
        # read into mtmd's own buffers, in each replica (not mapped): its weights, and its encoder's work
        # space for one image (measured on the test model: about its size again, and 32 MiB at least)
        size = os.path.getsize(projector)
        est.weights += size
        est.overhead += max(size, 32 * MIB)
        est.notes.append(f"projector {human_bytes(size)} ({os.path.basename(projector)}); an image's cells are "
                         "part of the context")
    est.replicas = max(1, int(replicas))
    if est.device == "gpu":
        est.gpu_runtime = CUDA_RUNTIME[engine]
    if engine in ("llama.cpp", "transformers") and settings.get("n_parallel"):
        with_slots(est, int(settings["n_parallel"]), "asked for")
    return est


def _gguf(path: Path, context: int | None, n_gpu_layers: Any, gpu: bool) -> Estimate:
    header = read_header(path, token_ids=())
    heads = header.arch("attention.head_count")
    embedding = header.arch("embedding_length")
    head_size = embedding // heads if isinstance(embedding, int) and isinstance(heads, int) and heads else None
    layers = header.arch("block_count")
    per_token = _kv(layers, header.arch("attention.head_count_kv") or heads,
                    header.arch("attention.key_length") or head_size,
                    header.arch("attention.value_length") or head_size, 2)
    context = context or header.arch("context_length") or 2048
    weights = header.file_size
    notes = [] if per_token else ["the GGUF metadata does not give the KV cache's shape: not counted"]
    fraction = 0.0
    if gpu:
        wanted = -1 if n_gpu_layers is None else int(n_gpu_layers)
        total_layers = (layers or 0) + 1  # the output layer counts as one more
        fraction = 1.0 if wanted < 0 or not layers else min(1.0, wanted / total_layers)
        gpu = fraction > 0
    tokens = header.get("tokenizer.ggml.tokens")
    vocab = tokens.length if hasattr(tokens, "length") else len(tokens) if isinstance(tokens, list) else 0
    # the compute buffer a busy worker touches: attention scores for a batch of prompt tokens against the
    # whole cache (f32, no flash attention), and the batch's activations
    scores_per_token = LLAMA_BATCH_TOKENS * (heads or 0) * 4
    scores = scores_per_token * context + LLAMA_BATCH_TOKENS * (embedding or 0) * 4 * 8
    return Estimate(
        engine="llama.cpp", context_length=context, weights=weights, kv_cache=per_token * context,
        overhead=64 * MIB + weights // 20 + scores + vocab * GRAMMAR_VOCAB_BYTES, runtime=RUNTIME["llama.cpp"],
        kv_per_token=per_token,
        device="gpu" if gpu else "cpu", gpu_fraction=fraction if gpu else 0.0, shared_weights=not gpu, notes=notes,
        vocab=vocab, scores_per_token=scores_per_token,
    )


#: A default never makes more slots than the shared cache holds requests of this many tokens.
TOKENS_PER_SLOT = 512
#: Most slots by default: on the 2-core build machine 16 streams decode 2.6 x the tokens/s of one, 8 streams
#: 2.1 x (bench/batching.py); a GPU gains from larger batches still.
MAX_SLOTS = {"cpu": 16, "gpu": 32}


def choose_slots(context: int | None, cores: int, device: str = "cpu", spare: int | None = None,
                 row: int = 0) -> tuple[int, str]:
    """Slots for a launch that names no n_parallel, as Ollama picks its parallel count: as many as the device
    batches well (8 per core on a CPU, up to MAX_SLOTS), no more than the shared cache (`context` tokens)
    holds requests of TOKENS_PER_SLOT tokens, and no more than the memory `spare` after the launch gives a
    logits row (`row` bytes) each. Returns the count and why, in words for describe and the launch line."""
    limits = {"device": MAX_SLOTS["gpu"] if device == "gpu" else min(MAX_SLOTS["cpu"], 8 * max(1, cores)),
              "cache": max(1, (context or TOKENS_PER_SLOT) // TOKENS_PER_SLOT)}
    if row and spare is not None:
        limits["memory"] = max(1, spare // row)
    slots = min(limits.values())
    words = {"device": f"{cores} cores" if device == "cpu" else "a GPU",
             "cache": f"{context} cached tokens / {TOKENS_PER_SLOT}", "memory": "free memory"}
    return slots, "from " + " and ".join(words[name] for name, limit in limits.items() if limit == slots)


#: Tokens of a page of transformers' paged cache: its continuous batching holds the context's pages and a
#: partly filled one per request (backends/transformers_batch.py).
TORCH_PAGE = 256


def with_slots(est: Estimate, slots: int, reason: str) -> Estimate:
    """The estimate with `slots` slots: a logits row of the vocabulary each (llama.cpp: in its compute graph
    and in the output buffer it copies them to), a page of cache each (transformers)."""
    est.slots, est.slots_reason = slots, reason
    est.overhead += slots * est.vocab * 4 * (2 if est.engine == "llama.cpp" else 1)
    if est.engine == "transformers":
        est.kv_cache += slots * TORCH_PAGE * est.kv_per_token
    return est



def _parameters(folder: Path) -> tuple[int, str]:
    """Parameters from safetensors headers; without those, the weight files' size as float32."""
    count = safetensors_parameters(folder)
    if count:
        return count, ""
    size = sum(p.stat().st_size for p in folder.glob("*.bin"))
    return size // 4, "no safetensors headers: parameters guessed from the .bin files' size"


def _pytorch(folder: Path, context: int | None, quantization: str, gpu: bool) -> Estimate:
    config = _read_json(folder / "config.json")
    nested = config.get("text_config")
    text: dict[str, Any] = nested if isinstance(nested, dict) else config
    dtype = str(config.get("torch_dtype") or config.get("dtype") or text.get("torch_dtype") or "float32")
    value_bytes = DTYPE_BYTES.get(dtype, 2) if gpu else 4  # the backend loads float32 on the CPU
    weight_bytes = {"8-bit": 1.0, "4-bit": 0.5}.get(quantization, value_bytes)
    parameters, note = _parameters(folder)
    heads = text.get("num_attention_heads")
    hidden = text.get("hidden_size")
    head_size = text.get("head_dim") or (hidden // heads if isinstance(hidden, int) and isinstance(heads, int)
                                         and heads else None)
    per_token = _kv(text.get("num_hidden_layers"), text.get("num_key_value_heads") or heads, head_size, head_size,
                    value_bytes)
    context = context or text.get("max_position_embeddings") or 2048
    weights = int(parameters * weight_bytes)
    notes = [note] if note else []
    if not per_token:
        notes.append("config.json does not give the KV cache's shape: not counted")
    return Estimate(
        engine="transformers", context_length=context, weights=weights, kv_cache=per_token * context,
        overhead=weights // 5 + 128 * MIB, runtime=RUNTIME["transformers"], kv_per_token=per_token,
        device="gpu" if gpu else "cpu", gpu_fraction=1.0 if gpu else 0.0, notes=notes,
    )


def _converted(folder: Path, context: int | None, gguf_type: str) -> Estimate:
    """A PyTorch model llama.cpp will run as GGUF (core/model_files/conversion.py): the converted file's size
    (known from the safetensors headers before converting), the KV cache as config.json shapes it, at 16 bits."""
    from xitui.core.model_files.conversion import converted_size

    est = _pytorch(folder, context, "none", gpu=False)
    weights = converted_size(folder, gguf_type)
    est.engine, est.weights, est.runtime = "llama.cpp", weights, RUNTIME["llama.cpp"]
    est.kv_per_token //= 2  # (float32 in transformers on a CPU; llama.cpp keeps F16)
    est.kv_cache = est.kv_per_token * (est.context_length or 0)
    est.overhead = weights // 10 + 64 * MIB
    est.shared_weights = True
    est.notes.append(f"weights as GGUF {gguf_type} after conversion")
    return est


def _ggml(path: Path, context: int | None) -> Estimate:
    """A GGML v3 file llama.cpp will run as GGUF: its weights as they are, the KV cache at F16 for every head
    (the file does not say how many key/value heads there are: an upper bound)."""
    from xitui.core.model_files.conversion import ggml_hyperparameters

    facts = ggml_hyperparameters(path)
    if facts is None:
        raise XituiError(f"{path.name} is not a GGML v3 (GGJT) file")
    per_token = 2 * facts["n_layer"] * facts["n_embd"] * 2
    context = context or 2048
    weights = path.stat().st_size
    return Estimate(
        engine="llama.cpp", context_length=context, weights=weights, kv_cache=per_token * context,
        overhead=64 * MIB + weights // 20, runtime=RUNTIME["llama.cpp"], kv_per_token=per_token,
        shared_weights=True, vocab=facts["n_vocab"], notes=["weights as the GGML v3 file holds them, as GGUF"],
    )


def _sentence_transformers(folder: Path, gpu: bool) -> Estimate:
    parameters, note = _parameters(folder)
    weights = parameters * 4
    return Estimate(
        engine="sentence_transformers", context_length=None, weights=weights, kv_cache=0,
        overhead=weights // 5 + 128 * MIB, runtime=RUNTIME["sentence_transformers"],
        device="gpu" if gpu else "cpu", gpu_fraction=1.0 if gpu else 0.0, notes=[note] if note else [],
    )


class InsufficientMemoryError(XituiError):
    """A launch that would not fit; `--force` (force: true) launches anyway."""

    status_code = 409
