"""PyTorch models on llama.cpp: the real Gemma 3 270M safetensors launched on a machine without a GPU is
converted to GGUF once (llama.cpp's converter, then its quantizer) and answers as the GGUF made from it by hand;
the seed's 8-bit runs as Q8_0; a second launch converts nothing; `xitui cache` shows and removes the files."""

from __future__ import annotations

import filecmp
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import THREADS
from tests.model_files import gemma_by_hand_f16
from tests.server.conftest import ServerProcess
from tests.support.cli import Ran, xitui
from xitui.client import Client, ClientError

pytestmark = pytest.mark.slow

PROMPTS = ("The capital of Italy is", "def fibonacci(n):")


@pytest.fixture(scope="module")
def by_hand(gemma_pt_dir: Path) -> Path:
    """The F16 GGUF a user makes with llama.cpp's converter, by hand (kept in the test cache)."""
    return gemma_by_hand_f16()


@pytest.fixture(scope="module")
def direct(by_hand: Path) -> Iterator[object]:
    import llama_cpp

    llm = llama_cpp.Llama(str(by_hand), n_ctx=256, n_threads=THREADS, verbose=False)
    yield llm
    llm.close()


def cli(server: ServerProcess, *args: str) -> Ran:
    """`xitui ARGS` against the server, on its home (where `cache` finds the converted files)."""
    return xitui(*args, "-e", server.url, env={"XITUI_HOME": str(server.home)})


def greedy(llm: Any, prompt: str) -> list[str]:
    """The 16 tokens llama-cpp-python's greedy completion writes, each as its `logprobs` names it (asking it
    for logprobs takes 5.5 s a call on gemma's 262k vocabulary; this takes 0.3)."""
    given = llm.tokenize(prompt.encode())
    ids = list(itertools.islice(itertools.takewhile(lambda t: t != llm.token_eos(), llm.generate(given, temp=0)), 16))
    return [llm.detokenize([t], prev_tokens=given + ids[:i]).decode("utf-8", errors="ignore") for i, t in enumerate(ids)]


def served(server: ServerProcess, uid: str, prompt: str) -> list[str]:
    out = Client(server.url).get_model(uid).generate(prompt, {"max_tokens": 16, "temperature": 0, "logprobs": 1})
    return out["choices"][0]["logprobs"]["tokens"]


def test_a_pytorch_model_runs_on_llama_cpp_as_its_gguf_made_by_hand(server: ServerProcess, gemma_pt_dir: Path,
                                                                      by_hand: Path, direct: object) -> None:
    client = Client(server.url)
    spec = {"version": 2, "model_name": "gemma-st", "model_lang": ["en"], "model_ability": ["generate"],
            "model_family": "other", "context_length": 2048,
            "model_specs": [{"model_format": "pytorch", "model_size_in_billions": "0_27", "quantization": q,
                             "model_uri": str(gemma_pt_dir)} for q in ("none", "8-bit")]}
    client.register_model("LLM", json.dumps(spec))
    try:
        # no engine named, no GPU here: llama.cpp, converted to F16 (the spec's "none")
        launch = cli(server, "launch", "-n", "gemma-st", "-q", "none")
        assert launch.returncode == 0, launch.stderr
        assert "gemma-st runs on llama.cpp as GGUF F16, converted from its safetensors" in launch.stderr
        described = client.describe_model("gemma-st")
        assert described["model_engine"] == "llama.cpp" and described["converted_to"] == "F16"
        assert "no GPU" in described["engine_reason"] and described["model_format"] == "pytorch"
        assert described["launch_stages"]["convert"] > 1  # (it took that long: the launch's stages say so)
        expected = {prompt: greedy(direct, prompt) for prompt in PROMPTS}
        for prompt in PROMPTS:
            assert served(server, "gemma-st", prompt) == expected[prompt], prompt

        # the seed's 8-bit, as Q8_0: quantized from the F16 converted above (the converter does not run again)
        uid = client.launch_model(model_name="gemma-st", model_uid="gemma-st-8", quantization="8-bit")
        assert client.describe_model(uid)["converted_to"] == "Q8_0"
        log = (server.home / "logs" / f"{uid}.log").read_text()
        assert "GGUF Q8_0 of the safetensors (quantized now from the F16 converted before" in log
        assert "convert" not in client.describe_model(uid)["launch_stages"]
        for prompt in PROMPTS:
            # measured: Q8_0's 16 greedy tokens are F16's on both prompts; a token may tie differently
            agree = sum(a == b for a, b in zip(served(server, uid, prompt), expected[prompt], strict=True))
            assert agree >= 14, (prompt, agree)
        client.terminate_model(uid)

        # again: the converted file is found, nothing converts
        uid = client.launch_model(model_name="gemma-st", model_uid="gemma-st-8b", quantization="8-bit")
        log = (server.home / "logs" / f"{uid}.log").read_text()
        assert "GGUF Q8_0 of the safetensors (converted before)" in log
        assert "quantize" not in client.describe_model(uid)["launch_stages"]

        # (transformers stays one word away, model_engine="transformers": the PyTorch tests launch it so)
        listed = json.loads(cli(server, "cache", "list", "--json").stdout)
        converted = {item["type"]: item for item in listed if item.get("cache") == "converted"}
        assert set(converted) == {"F16", "Q8_0"}
        assert all(item["registrations"] == ["gemma-st"] for item in converted.values())
        assert converted["F16"]["source"] == str(gemma_pt_dir.resolve())
        # the converter ran as a user runs it: the server's F16 is the one made by hand, byte for byte
        assert filecmp.cmp(converted["F16"]["file"], by_hand, shallow=False)
    finally:
        for uid in list(client.list_models()):
            client.terminate_model(uid)
    removed = cli(server, "cache", "remove", "gemma-st")
    assert removed.returncode == 0 and removed.stderr.count("removed ") == 2, removed.stderr
    assert not list((server.home / "converted").glob("*.gguf"))
    client.unregister_model("LLM", "gemma-st")


def safetensors_spec(name: str, folder: Path) -> str:
    return json.dumps({"version": 2, "model_name": name, "model_lang": ["en"], "model_ability": ["generate"],
                       "model_family": "other",
                       "model_specs": [{"model_format": "pytorch", "model_size_in_billions": 1, "quantization": "none",
                                        "model_uri": str(folder)}]})


def test_what_the_converter_cannot_read_is_one_line(server: ServerProcess, tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "model_type": "llama"}))
    (folder / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    client = Client(server.url)
    client.register_model("LLM", safetensors_spec("broken-st", folder))
    with pytest.raises(ClientError) as err:
        client.launch_model(model_name="broken-st", model_engine="llama.cpp")
    assert "llama.cpp's converter could not convert" in str(err.value) and "\n" not in str(err.value)
    assert not list((server.home / "converted").glob("*")) or \
        not [p for p in (server.home / "converted").iterdir() if p.suffix in (".gguf", ".part")]
    client.unregister_model("LLM", "broken-st")
    # an architecture the converter does not know: said before anything runs
    (folder / "config.json").write_text(json.dumps({"architectures": ["FooForCausalLM"]}))
    client.register_model("LLM", safetensors_spec("foo-st", folder))
    with pytest.raises(ClientError) as err:
        client.launch_model(model_name="foo-st", model_engine="llama.cpp")
    assert str(err.value).endswith("llama.cpp's converter does not know FooForCausalLM: model_engine transformers "
                                   "runs it") and err.value.status_code == 400
    client.unregister_model("LLM", "foo-st")


def test_a_pipe_in_the_model_folder_is_refused_not_waited_on(server: ServerProcess, tmp_path: Path) -> None:
    """The converter opens the folder's files: a FIFO there held the launch (and the lock every later launch of
    those weights waits on) forever. Now one line, at once, and again on the next try."""
    import os
    import shutil

    from tests.model_files import tiny_pt_dir

    folder = tmp_path / "fifo"
    shutil.copytree(tiny_pt_dir(), folder)
    (folder / "tokenizer.json").unlink()
    os.mkfifo(folder / "tokenizer.json")
    client = Client(server.url)
    client.register_model("LLM", safetensors_spec("fifo-st", folder))
    try:
        for _ in range(2):
            with pytest.raises(ClientError) as err:
                client.launch_model(model_name="fifo-st", model_engine="llama.cpp")
            assert "'tokenizer.json' in" in str(err.value) and "is not a regular file" in str(err.value)
            assert "\n" not in str(err.value)
    finally:
        client.unregister_model("LLM", "fifo-st")
