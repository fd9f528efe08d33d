"""The API is what /openapi.json says: a schemathesis run with all its checks against a real server with the
bundled models loaded (a bounded number of examples; launching arbitrary models is left out)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.server.conftest import ServerProcess
from xitui.client import Client

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, gguf_path: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(tmp_path_factory.mktemp("openapi-home"))
    client = Client(srv.url)
    client.launch_model(model_name="demo-smollm2-135m", model_uid="st-llm", context_length=512)
    client.launch_model(model_name="demo-minilm", model_type="embedding", model_uid="st-emb")
    yield srv
    srv.stop()


def test_every_answer_is_documented_and_no_request_breaks_the_server(loaded: ServerProcess, tmp_path: Path) -> None:
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "tests.server.schemathesis_hooks", "PYTHONPATH": str(ROOT),
           "XITUI_ST_LLM": "st-llm", "XITUI_ST_EMBEDDING": "st-emb"}
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(HERE / "schemathesis.toml"), "run",
         f"{loaded.url}/openapi.json", "--checks", "all", "--max-examples", "25", "--seed", "20261126",
         "--exclude-operation-id", "launch_model_v1_models_post", "--generation-database", "none",
         "--workers", "1", "--no-color", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )
    # the failures, each line cut short (generated bodies run to pages), then the summary
    found = run.stdout.split("= FAILURES =")[-1] if "= FAILURES =" in run.stdout else run.stdout[-3000:]
    shown = "\n".join(line[:400] for line in found.splitlines() if line.strip())
    assert run.returncode == 0, shown + run.stderr[-2000:]
    assert "passed" in run.stdout
    client = Client(loaded.url)
    # the run reached the real models, and they (and the server) are still serving
    for uid in ("st-llm", "st-emb"):
        desc = client.describe_model(uid)
        assert desc["state"] == "ready", desc
        assert desc["metrics"]["requests"] >= 3, desc["metrics"]
    assert client.get_model("st-llm").generate("One, two,", {"max_tokens": 2})["choices"][0]["text"]


def test_an_empty_prompt_is_written_from_the_start_of_text(loaded: ServerProcess) -> None:
    """SmolLM2 adds no start-of-text token: an empty prompt was no token at all, and the engine's step failed
    with it (a 500 for every request in the batch). Found by schemathesis once the schema grew."""
    import httpx

    for body in ({"prompt": ""}, {"prompt": "", "max_tokens": 4, "stream": True}):
        done = httpx.post(f"{loaded.url}/v1/completions", json={"model": "st-llm", **body}, timeout=60)
        assert done.status_code == 200, done.text
    assert Client(loaded.url).get_model("st-llm").generate("", {"max_tokens": 4})["usage"]["prompt_tokens"] == 1


def test_the_document_lists_the_error_answers(loaded: ServerProcess) -> None:
    doc = Client(loaded.url).transport.get("/openapi.json")
    paths = doc["paths"]
    completions = paths["/v1/completions"]["post"]["responses"]
    assert {"200", "400", "401", "403", "404", "413", "415", "500"} <= set(completions)
    assert "text/event-stream" in completions["200"]["content"]
    launch = paths["/v1/models"]["post"]["responses"]
    assert {"400", "404", "409"} <= set(launch) and "422" not in launch
    assert paths["/v1/models/{model_uid}"]["get"]["responses"]["404"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/ErrorBody"}
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    assert "401" not in paths["/v1/cluster/auth"]["get"]["responses"]
