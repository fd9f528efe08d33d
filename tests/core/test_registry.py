"""The registry: builtins, custom registrations, persistence, atomic and locked writes."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES
from xitui.core.errors import ConflictError, ForbiddenError, NotFoundError, SpecError
from xitui.core.specs.registry import Registry

DOC_LLM = (EXAMPLES / "custom-llama-2.json").read_text()
DOC_EMBEDDING = (EXAMPLES / "custom-bge-base-en.json").read_text()


def test_builtins_are_listed_with_is_builtin(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    llms = reg.list("LLM")
    names = {item["model_name"] for item in llms}
    assert len(llms) >= 20 and all(item["is_builtin"] for item in llms)
    assert {
        "llama-2",
        "llama-2-chat",
        "llama-3-instruct",
        "qwen2.5-instruct",
        "gemma-3-it",
        "mistral-instruct-v0.2",
        "phi-3-mini-4k-instruct",
        "baichuan-2-chat",
        "chatglm3",
        "tiny-llama",
        "gpt-2",
    } <= names
    assert len(reg.list("embedding")) >= 5
    detailed = reg.list("LLM", detailed=True)
    assert detailed[0]["version"] == 2 and "model_specs" in detailed[0]


def test_register_list_get_unregister(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.register("LLM", DOC_LLM, persist=False)
    assert {"model_name": "custom-llama-2", "is_builtin": False} in reg.list("LLM")
    assert reg.list("LLM", builtin=False) == [{"model_name": "custom-llama-2", "is_builtin": False}]
    assert reg.get("LLM", "custom-llama-2").model_specs[0].quantization == "4-bit"
    # not persisted: another registry over the same home does not see it
    assert Registry(tmp_path).list("LLM", builtin=False) == []
    reg.unregister("LLM", "custom-llama-2")
    with pytest.raises(NotFoundError):
        reg.get("LLM", "custom-llama-2")


def test_persisted_registration_survives_and_is_version_2(tmp_path: Path) -> None:
    Registry(tmp_path).register("embedding", DOC_EMBEDDING, persist=True)
    path = tmp_path / "model" / "embedding" / "custom-bge-base-en.json"
    assert json.loads(path.read_text())["version"] == 2
    assert Registry(tmp_path).get("embedding", "custom-bge-base-en").dimensions == 768
    Registry(tmp_path).unregister("embedding", "custom-bge-base-en")
    assert not path.exists()


def test_refusals(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.register("LLM", DOC_LLM, persist=True)
    with pytest.raises(ConflictError, match="Model custom-llama-2 already registered"):
        reg.register("LLM", DOC_LLM)
    with pytest.raises(ForbiddenError, match="builtin") as refused:
        reg.unregister("LLM", "llama-2")
    assert refused.value.status_code == 403
    with pytest.raises(NotFoundError):
        reg.unregister("LLM", "never-registered")
    with pytest.raises(SpecError):
        reg.register("LLM", "{}")
    assert reg.get("LLM", "custom-llama-2")  # the refusals lost nothing


def test_corrupt_file_is_skipped_with_a_warning_naming_it(tmp_path: Path) -> None:
    reg = Registry(tmp_path)
    reg.register("LLM", DOC_LLM, persist=True)
    bad = tmp_path / "model" / "llm" / "broken.json"
    bad.write_text('{"model_name": "broken", ')
    names = [item["model_name"] for item in reg.list("LLM", builtin=False)]
    assert names == ["custom-llama-2"]
    assert len(reg.warnings) == 1 and str(bad) in reg.warnings[0]


def _worker(home: str, index: int, rounds: int) -> None:
    reg = Registry(Path(home))
    for round_ in range(rounds):
        spec = json.loads(DOC_EMBEDDING)
        spec["model_name"] = f"emb-{index}-{round_}"
        reg.register("embedding", json.dumps(spec), persist=True)
        if round_ % 2:
            reg.unregister("embedding", f"emb-{index}-{round_ - 1}")
    # everyone also races on one shared name: exactly one process may win it
    spec = json.loads(DOC_EMBEDDING)
    spec["model_name"] = "shared"
    with contextlib.suppress(ConflictError):
        reg.register("embedding", json.dumps(spec), persist=True)


def test_eight_processes_never_lose_or_corrupt_entries(tmp_path: Path) -> None:
    rounds = 12
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(str(tmp_path), i, rounds)) for i in range(8)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    reg = Registry(tmp_path)
    names = {item["model_name"] for item in reg.list("embedding", builtin=False)}
    expected = {f"emb-{i}-{r}" for i in range(8) for r in range(rounds) if r % 2} | {"shared"}
    assert names == expected
    assert reg.warnings == []
    assert not list((tmp_path / "model" / "embedding").glob("*.tmp"))
