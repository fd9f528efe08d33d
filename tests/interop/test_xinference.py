"""xitui's CLI, Client, wizard and dashboard against a real Xinference 4.1.0 cluster (supervisor + worker)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import xitui_cmd
from tests.server.conftest import ServerProcess, gguf_spec
from tests.server.test_embeddings import flat_spec
from xitui.client import Client


def xitui(*args: str, stdin: str | None = None, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*xitui_cmd(), *args], capture_output=True, text=True, input=stdin, timeout=timeout)


def test_which_server_answers_is_asked_not_guessed(cluster: str, server: ServerProcess) -> None:
    assert Client(cluster).server_kind() == "xinference"
    assert Client(server.url).server_kind() == "xitui"


def test_documented_version_1_gguf_workflow_through_the_cli(cluster: str, gguf_path: Path, tmp_path: Path) -> None:
    """register (v1 JSON, normalised on the way), registrations, launch (returns, engine asked for), list,
    generate piped, chat, terminate, unregister: each one line of output or the text, exit code 0."""
    spec = tmp_path / "v1.json"
    spec.write_text(gguf_spec("xi-cli-gemma", gguf_path, version=1))
    e = ("-e", cluster)
    try:
        done = xitui("register", "-t", "LLM", "--file", str(spec), *e)
        assert done.returncode == 0, done.stderr
        # (not `xitui registrations -t LLM`: Xinference 4.1 here never answers its LLM listing once a custom
        # LLM is registered; the single registration answers)
        registration = Client(cluster).get_model_registration("LLM", "xi-cli-gemma")
        assert registration["version"] == 2 and registration["model_specs"][0]["quantization"] == "q4_k_m"
        listed = xitui("registrations", "-t", "embedding", "--json", *e)
        assert listed.returncode == 0 and json.loads(listed.stdout)
        start = time.monotonic()
        launched = xitui("launch", "--model-name", "xi-cli-gemma", *e)
        assert launched.returncode == 0, launched.stderr
        assert launched.stdout.strip() == "xi-cli-gemma" and time.monotonic() - start < 120
        table = xitui("list", *e)
        row = next(line for line in table.stdout.splitlines() if line.startswith("xi-cli-gemma"))
        assert "\tready\t" in row and "llama.cpp" in row and "\t-\t" in row  # what Xinference lacks is "-"
        text = xitui("generate", "-u", "xi-cli-gemma", "--max-tokens", "8", "--temperature", "0", *e,
                     stdin="The capital of France is Paris. The capital of Germany is")
        assert text.returncode == 0 and "Berlin" in text.stdout, text.stderr
        chat = xitui("chat", "-u", "xi-cli-gemma", "--max-tokens", "8", *e, stdin="Hello")
        assert chat.returncode == 0 and chat.stdout.strip(), chat.stderr
        assert xitui("terminate", "-u", "xi-cli-gemma", *e).returncode == 0
        assert "xi-cli-gemma" not in Client(cluster).list_models()
    finally:
        Client(cluster).terminate_model("xi-cli-gemma") if "xi-cli-gemma" in Client(cluster).list_models() else None
        xitui("unregister", "-t", "LLM", "--model-name", "xi-cli-gemma", *e)
    gone = xitui("unregister", "-t", "LLM", "--model-name", "xi-cli-gemma", *e)
    assert gone.stderr.count("\n") <= 1 and "address=" not in gone.stderr


@pytest.fixture(scope="module")
def xi_gemma(cluster: str, gguf_path: Path) -> Iterator[str]:
    """The documented Python calls with nothing but the import changed: a v2 LLM spec registered and launched
    (once: a launch on the cluster takes ~13 s), for the client's and the dashboard's tests."""
    client = Client(cluster)
    client.register_model(model_type="LLM", model=gguf_spec("xi-py-gemma", gguf_path, version=2), persist=False)
    try:
        yield client.launch_model(model_name="xi-py-gemma", model_format="ggufv2")
    finally:
        if "xi-py-gemma" in client.list_models():
            client.terminate_model("xi-py-gemma")
        client.unregister_model("LLM", "xi-py-gemma")


def test_client_version_2_and_flat_embedding(cluster: str, xi_gemma: str) -> None:
    """The documented Python calls with nothing but the import changed: v2 LLM and flat embedding specs."""
    client = Client(cluster)
    client.register_model(model_type="embedding", model=flat_spec("xi-py-minilm"), persist=False)
    try:
        model = client.get_model(model_uid=xi_gemma)
        answer = model.generate("One, two, three,", generate_config={"max_tokens": 6, "temperature": 0})
        assert answer["choices"][0]["text"]
        pieces = [c["choices"][0]["delta"].get("content") or "" for c in
                  model.chat([{"role": "user", "content": "Hi"}], generate_config={"stream": True, "max_tokens": 6})]
        assert "".join(pieces)
        described = client.describe_model(xi_gemma)
        assert described["model_engine"] == "llama.cpp" and described["model_format"] == "ggufv2"
        emb = client.launch_model(model_name="xi-py-minilm", model_type="embedding")
        vectors = client.get_model(emb).create_embedding(["hello", "world"])
        assert len(vectors["data"]) == 2 and len(vectors["data"][0]["embedding"]) == 384
    finally:
        if "xi-py-minilm" in client.list_models():
            client.terminate_model("xi-py-minilm")
        client.unregister_model("embedding", "xi-py-minilm")


def test_bad_input_gets_the_same_one_line_errors(cluster: str, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model_name": "bad name", "model_specs": []}))
    for endpoint_args in (("-e", cluster),):
        done = xitui("register", "-t", "LLM", "--file", str(bad), *endpoint_args)
        assert done.returncode == 1 and done.stderr.startswith("error: model_name: must start with")
        assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
        nobody = xitui("launch", "--model-name", "nobody-here", *endpoint_args)
        assert nobody.returncode == 1 and "not registered" in nobody.stderr and "address=" not in nobody.stderr
        gone = xitui("terminate", "-u", "nobody-here", *endpoint_args)
        assert gone.returncode == 1 and gone.stderr.count("\n") == 1 and "address=" not in gone.stderr


def test_wizard_yes_registers_and_launches_on_the_cluster(cluster: str, gguf_path: Path, tmp_path: Path) -> None:
    # the name is checked by asking for the one registration (Xinference's LLM listing never answers here)
    Client(cluster).register_model("LLM", gguf_spec("xi-taken", gguf_path, version=2), persist=False)
    try:
        taken = xitui("wizard", str(gguf_path), "--yes", "--name", "xi-taken", "--register", "-e", cluster)
    finally:
        Client(cluster).unregister_model("LLM", "xi-taken")
    assert taken.returncode == 1 and "'xi-taken' is already registered on the server" in taken.stderr, taken.stderr
    done = xitui("wizard", str(gguf_path), "--yes", "--name", "xi-wizard", "--register", "--launch",
                 "--output", str(tmp_path / "w.json"), "-e", cluster)
    client = Client(cluster)
    try:
        assert done.returncode == 0, done.stderr
        assert client.describe_model("xi-wizard")["model_name"] == "xi-wizard"
        assert client.get_model_registration("LLM", "xi-wizard")["model_family"] == "gemma-3-it"
    finally:
        if "xi-wizard" in client.list_models():
            client.terminate_model("xi-wizard")
        client.unregister_model("LLM", "xi-wizard")


def test_dashboard_models_table_on_the_cluster(cluster: str, xi_gemma: str) -> None:
    """The dashboard reads Xinference's model list: the row is there (without waiting on the registrations,
    which Xinference is slow to list), fields it lacks show as —."""
    from xitui.tui.dashboard_app import make_app
    from xitui.tui.widgets.models_table import ModelsTable

    async def main() -> tuple[str, ...]:
        app = make_app(Client(cluster), cluster, "dark", refresh=0.3)
        async with app.run_test(size=(120, 40)) as pilot:
            table = app.query_one(ModelsTable)
            deadline = time.monotonic() + 30
            while xi_gemma not in table._rows and time.monotonic() < deadline:
                await pilot.pause(0.1)
            # the table did not wait for the registrations: Xinference's LLM listing is still unanswered
            assert app.dashboard._reading_registrations
            banner: Any = app.query_one("#banner")
            assert not banner.has_class("-shown")
            return table._rows[xi_gemma]

    row = asyncio.run(main())
    assert row[1] == "ready" and row[3].startswith("llama.cpp") and row[5] == "—"
