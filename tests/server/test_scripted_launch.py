"""The scripted engine is a test's alone: a server plans a launch on it only when started with the switch, and a
scripted model launched there is described, and fails to load, as any other model."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import servers
from tests.support.models import launched
from tests.support.specs import scripted_spec
from xitui.client import Client, ClientError
from xitui.core.errors import LaunchError
from xitui.core.specs.registry import Registry
from xitui.server.runtime.launch_plan import LaunchPlan


def test_only_a_server_started_with_the_switch_plans_a_scripted_launch(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch):
    registry = Registry(tmp_path)
    registry.register("LLM", scripted_spec("fake", tmp_path / "fake", [{"reply": "hi"}]))
    request = {"model_name": "fake", "model_engine": "scripted"}
    monkeypatch.delenv("XITUI_SCRIPTED_ENGINE", raising=False)
    with pytest.raises(LaunchError) as refused:
        LaunchPlan.build(registry, request)
    assert str(refused.value) == ("model_engine 'scripted' is xitui's test engine, off on this server (a test server "
                                  "starts with XITUI_SCRIPTED_ENGINE=1)")
    assert refused.value.status_code == 400
    monkeypatch.setenv("XITUI_SCRIPTED_ENGINE", "yes")  # the switch is "1", nothing else
    with pytest.raises(LaunchError):
        LaunchPlan.build(registry, request)
    monkeypatch.setenv("XITUI_SCRIPTED_ENGINE", "1")
    assert LaunchPlan.build(registry, request).engine == "scripted"
    assert LaunchPlan.build(registry, {"model_name": "fake"}).engine == "transformers"  # the format's, as ever


def test_a_scripted_model_is_described_and_a_broken_script_fails_its_launch_in_one_line(
        scripted: servers.ServerProcess, tmp_path: Path):
    client = Client(scripted.url)
    spec = scripted_spec("described", tmp_path / "described", {"rules": [{"reply": "hi"}], "slots": 3},
                         abilities=["chat", "tools"])
    with launched(client, "described", spec, model_engine="scripted") as uid:
        desc = client.describe_model(uid)
        assert (desc["model_engine"], desc["state"], desc["slots"]) == ("scripted", "ready", 3)
        assert (desc["chat_format"], desc["batching"]) == ("the spec's chat_template", "scripted, 3 requests at once")
    broken = scripted_spec("broken", tmp_path / "broken", [{"reply": "hi", "colour": "red"}])
    with pytest.raises(ClientError) as failed, launched(client, "broken", broken, model_engine="scripted"):
        pass
    assert "the script" in str(failed.value) and "rules[0]: unknown key 'colour'" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert "broken" not in client.list_models()


def test_launched_leaves_nothing_behind_whatever_the_block_does(scripted: servers.ServerProcess, tmp_path: Path):
    client = Client(scripted.url)
    registered = {r["model_name"] for r in client.list_model_registrations("LLM")}
    spec = scripted_spec("passing", tmp_path / "passing", [{"reply": "hi"}])
    with pytest.raises(ZeroDivisionError), launched(client, "passing", spec, model_engine="scripted") as uid:
        assert uid in client.list_models()
        1 / 0  # noqa: B018 - a test that fails in the block
    broken = scripted_spec("broken-too", tmp_path / "broken", [{"reply": 1}])
    with pytest.raises(ClientError), launched(client, "broken-too", broken, model_engine="scripted"):
        pass
    assert not {"passing", "broken-too"} & set(client.list_models())
    assert {r["model_name"] for r in client.list_model_registrations("LLM")} == registered


def test_gpu_fields_are_honoured_or_refused_never_ignored(scripted: servers.ServerProcess, tmp_path: Path):
    """Xinference's `n_gpu` and `gpu_idx` on a machine without a GPU (this one; NVML answers nothing): asking for
    GPUs is a one-line 400, asking for the CPU launches on it; the worst values are 400s too."""
    import httpx

    client = Client(scripted.url)
    spec = scripted_spec("devices", tmp_path / "devices", [{"reply": "on the CPU"}])
    client.register_model("LLM", spec)
    base = {"model_name": "devices", "model_engine": "scripted"}
    # GPUs this machine does not have: a 409 (the request is well formed); fields at odds or malformed: a 400
    cases = [({"n_gpu": 1}, 409, "n_gpu: 1 GPU asked, this machine has no GPU"),
             ({"n_gpu": 4}, 409, "n_gpu: 4 GPUs asked"),
             ({"gpu_idx": 0}, 409, "gpu_idx: no GPU 0 here: this machine has no GPU"),
             ({"gpu_idx": [0, 1]}, 409, "gpu_idx: no GPU 0, 1 here: this machine has no GPU"),
             ({"n_gpu": 2, "gpu_idx": [0]}, 409, "gpu_idx: no GPU 0 here"),
             ({"n_gpu": None, "gpu_idx": [0]}, 400, "gpu_idx: names GPUs for a launch whose n_gpu says CPU only"),
             ({"n_gpu": -1}, 400, "n_gpu"), ({"n_gpu": "all"}, 400, "n_gpu"), ({"n_gpu": True}, 400, "n_gpu"),
             ({"gpu_idx": -1}, 400, "gpu_idx"), ({"gpu_idx": "0"}, 400, "gpu_idx"),
             ({"gpu_idx": [0] * 65}, 400, "gpu_idx"), ({"gpu_idx": 10**30}, 400, "gpu_idx")]
    with httpx.Client(base_url=scripted.url, timeout=60) as h:
        for fields, status, says in cases:
            answer = h.post("/v1/models", json={**base, **fields})
            assert answer.status_code == status, (fields, answer.text)
            detail = answer.json()["detail"]
            assert says in detail and "\n" not in detail, (fields, detail)
    assert client.list_models() == {}
    for cpu in (None, 0):
        uid = client.launch_model(model_name="devices", model_engine="scripted", n_gpu=cpu)
        try:
            assert client.get_model(uid).generate("hi", {"max_tokens": 8})["choices"][0]["text"] == "on the CPU"
        finally:
            client.terminate_model(uid)
    # no index named is no index (it was a 500 once: "auto" compared with a count)
    with httpx.Client(base_url=scripted.url, timeout=60) as h:
        assert h.post("/v1/models", json={**base, "gpu_idx": []}).status_code == 200
    client.terminate_model("devices")


def test_a_modelscope_spec_is_refused_in_one_line_without_its_package(tmp_path: Path):
    """`model_hub: modelscope` was downloaded from Hugging Face under the same id once; without the modelscope
    package (not installed here) the launch says what to do instead."""
    import importlib.util
    import json

    if importlib.util.find_spec("modelscope") is not None:
        pytest.skip("the modelscope package is installed here")
    registry = Registry(tmp_path)
    llm = {"version": 2, "model_name": "from-modelscope", "model_lang": ["en"], "model_ability": ["generate"],
           "model_family": "qwen3", "model_specs": [{"model_format": "pytorch", "model_size_in_billions": "0_6",
                                                     "quantization": "none", "model_id": "Qwen/Qwen3-0.6B",
                                                     "model_hub": "modelscope"}]}
    embedding = {"model_name": "ms-embed", "dimensions": 384, "max_tokens": 256, "language": ["en"],
                 "model_id": "AI-ModelScope/bge-small", "model_hub": "modelscope"}
    registry.register("LLM", json.dumps(llm))
    registry.register("embedding", json.dumps(embedding))
    for request in ({"model_name": "from-modelscope"}, {"model_name": "ms-embed", "model_type": "embedding"}):
        with pytest.raises(LaunchError) as refused:
            LaunchPlan.build(registry, request)
        assert str(refused.value).startswith("model_hub 'modelscope': the modelscope package is not installed")
        assert refused.value.status_code == 400
    # the same spec with its files named plans as any other (no download, no hub)
    llm["model_specs"][0]["model_uri"] = str(tmp_path)
    llm["model_name"] = "local-copy"
    registry.register("LLM", json.dumps(llm))
    assert LaunchPlan.build(registry, {"model_name": "local-copy"}).model_path == str(tmp_path)


def test_speculative_is_ngram_or_off_and_anything_else_is_one_line(scripted: servers.ServerProcess,
                                                                    tmp_path: Path):
    """The launch field `speculative` at its worst: another word, another type, a list, a huge string; each a
    one-line 400 naming the field, nothing launched. An engine that drafts nothing (the scripted one, as
    transformers) launches with it all the same and says nothing of drafts."""
    import httpx

    client = Client(scripted.url)
    client.register_model("LLM", scripted_spec("drafty", tmp_path / "drafty", [{"reply": "plain"}]))
    base = {"model_name": "drafty", "model_engine": "scripted"}
    with httpx.Client(base_url=scripted.url, timeout=60) as h:
        for bad in ("eagle", "NGRAM", "", 1, True, ["ngram"], {"type": "ngram"}, "x" * 100_000):
            answer = h.post("/v1/models", json={**base, "speculative": bad})
            assert answer.status_code == 400, (bad, answer.text)
            detail = answer.json()["detail"]
            assert "speculative" in detail and "\n" not in detail and len(detail) < 400, detail
        assert client.list_models() == {}
        estimate = h.post("/v1/estimate", json={**base, "speculative": "eagle"})
        assert estimate.status_code == 400 and "speculative" in estimate.json()["detail"]
    uid = client.launch_model(**base, speculative="off")
    try:
        described = client.describe_model(uid)
        assert "speculative" not in described and described["metrics"]["drafted"] == 0
    finally:
        client.terminate_model(uid)
