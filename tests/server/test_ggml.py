"""GGML v3 files launch again: the seed's ggmlv3 spec, pointing at a GGML v3 file written from the tiny Llama
test model (tests/model_files.py), is converted to GGUF once and answers as the model's GGUF twin; broken GGML
files are one line each."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.model_files import ggml_v3_pair
from tests.server.conftest import ServerProcess
from xitui.client import Client, ClientError

pytestmark = pytest.mark.slow

PROMPT = "The capital of France is"


def seed_spec(name: str, folder: Path) -> str:
    """The seed's documented ggmlv3 entry (version 1, two quantizations), with this file's name."""
    return json.dumps({
        "version": 1, "context_length": 2048, "model_name": name, "model_lang": ["en"],
        "model_ability": ["generate"], "model_family": "llama-2",
        "model_specs": [{"model_format": "ggmlv3", "model_size_in_billions": 7, "quantizations": ["q4_0", "q8_0"],
                         "model_id": "TheBloke/Llama-2-7B-GGML",
                         "model_file_name_template": "tiny-llama.ggmlv3.{quantization}.bin",
                         "model_uri": f"file://{folder}"}]})


def greedy(client: Client, uid: str) -> list[str]:
    out = client.get_model(uid).generate(PROMPT, {"max_tokens": 16, "temperature": 0, "ignore_eos": True,
                                                  "logprobs": 1})
    return out["choices"][0]["logprobs"]["tokens"]


def test_the_seeds_ggml_spec_launches_and_answers_as_its_gguf_twin(server: ServerProcess) -> None:
    folder, twin = ggml_v3_pair()
    client = Client(server.url)
    client.register_model("LLM", seed_spec("tiny-ggml", folder))
    client.register_model("LLM", json.dumps({
        "version": 2, "context_length": 2048, "model_name": "tiny-twin", "model_lang": ["en"],
        "model_ability": ["generate"], "model_family": "llama-2",
        "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": 7, "quantization": "q8_0",
                         "model_uri": str(twin)}]}))
    try:
        uid = client.launch_model(model_name="tiny-ggml", quantization="q8_0", n_parallel=1)
        described = client.describe_model(uid)
        assert described["model_engine"] == "llama.cpp" and described["converted_to"] == "GGUF"
        assert described["model_format"] == "ggmlv3"
        twin_uid = client.launch_model(model_name="tiny-twin", n_parallel=1)
        tokens = greedy(client, uid)
        assert len(tokens) == 16 and tokens == greedy(client, twin_uid)
        client.terminate_model(uid)
        again = client.launch_model(model_name="tiny-ggml", model_uid="tiny-ggml-2", quantization="q8_0",
                                    n_parallel=1)
        log = (server.home / "logs" / f"{again}.log").read_text()
        assert "GGUF GGUF of the GGML v3 file (converted before)" in log
        assert greedy(client, again) == tokens
        # the seed's other quantization names a file that is not there: one line
        with pytest.raises(ClientError) as err:
            client.launch_model(model_name="tiny-ggml", model_uid="tiny-q4", quantization="q4_0")
        assert "tiny-llama.ggmlv3.q4_0.bin" in str(err.value) and "\n" not in str(err.value)
    finally:
        for running in list(client.list_models()):
            client.terminate_model(running)
        for name in ("tiny-ggml", "tiny-twin"):
            client.unregister_model("LLM", name)


@pytest.mark.parametrize(("damage", "says"), [
    ("truncated", "ends"),
    ("version 2", "GGJT version 2"),
    ("not ggml", "is not a GGML v3 (GGJT) file"),
    ("foreign tensor", "is not one of a LLaMA model's"),
    ("empty", "is not a GGML v3 (GGJT) file"),
    # each of these converted "cleanly" once, and llama.cpp then refused the file, or aborted the worker on it
    ("token twice", "its vocabulary has a token twice"),
    ("one head", "its key heads (16 wide) do not fit 1 heads of 32"),
    ("fewer layers", "tensors beyond its 1 layers"),
    ("file type", "its file type (-1) is not one"),
])
def test_broken_ggml_files_are_one_line(server: ServerProcess, tmp_path: Path, damage: str, says: str) -> None:
    folder, _ = ggml_v3_pair()
    data = bytearray((folder / "tiny-llama.ggmlv3.q8_0.bin").read_bytes())
    if damage == "truncated":
        data = data[:len(data) // 2]
    elif damage == "version 2":
        data[4:8] = (2).to_bytes(4, "little")
    elif damage == "not ggml":
        data[:4] = b"GGUF"
    elif damage == "empty":
        data = bytearray()
    elif damage == "token twice":
        start = data.index(b"<0x00>")
        data[start:start + 6] = b"<0x01>"
    elif damage in ("one head", "fewer layers", "file type"):  # n_head, n_layer, ftype of the 7 int32 at 8
        at, value = {"one head": (20, 1), "fewer layers": (24, 1), "file type": (32, -1)}[damage]
        data[at:at + 4] = value.to_bytes(4, "little", signed=True)
    else:
        start = data.index(b"tok_embeddings.weight")
        data[start:start + 21] = b"vision_tower.weight!!"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "tiny-llama.ggmlv3.q8_0.bin").write_bytes(bytes(data))
    client = Client(server.url)
    name = "broken-" + damage.replace(" ", "-")
    client.register_model("LLM", seed_spec(name, broken))
    try:
        with pytest.raises(ClientError) as err:
            client.launch_model(model_name=name, quantization="q8_0", n_parallel=1)
        assert says in str(err.value) and "\n" not in str(err.value), str(err.value)
        assert not [p for p in (server.home / "converted").glob("*") if p.suffix in (".gguf", ".part")
                    and "broken" in p.name]
    finally:
        client.unregister_model("LLM", name)
        shutil.rmtree(broken)
