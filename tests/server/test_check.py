"""`xitui check`: the bundled models pass every row, live; broken specs of a real model (a wrong tool parser, a
wrong prompt style) are each flagged with the fix, and --fix registers the corrected spec. The third broken
spec, a context longer than the file's, is checked from the dashboard (tests/tui/test_dashboard_pilot.py) and
the wizard's last step (tests/wizard/test_wizard_keys.py), each registering its fix."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.server.conftest import ServerProcess, gguf_spec
from tests.support.cli import Ran, xitui
from xitui.client import Client

pytestmark = pytest.mark.slow


def cli(server: ServerProcess, *args: str) -> Ran:
    return xitui(*args, "-e", server.url, env={"XITUI_HOME": str(server.home)})


@pytest.mark.parametrize(("name", "kind", "rows"), [
    ("demo-smollm2-135m", "LLM", ["chat format", "tools", "json_schema", "context length"]),
    ("demo-gemma3-270m", "LLM", ["generate", "json_schema", "context length"]),
    ("demo-minilm", "embedding", ["dimensions", "similarity"]),
])
def test_the_bundled_models_pass_every_row(server: ServerProcess, name: str, kind: str, rows: list[str]) -> None:
    """The embedding model is launched for the check and let go after. The LLMs are checked as they run,
    launched with 1024 tokens of context: the context row fills 80% of the context the model runs with, and
    llama.cpp reads SmolLM2's prompts at 240 tokens a second here (Gemma's at 500): at the bundled 8192 the
    row alone took 40 s, at 2048 7 s."""
    client = Client(server.url)
    running = kind == "LLM"
    if running:
        client.launch_model(model_name=name, model_type=kind, context_length=1024)
    try:
        ran = cli(server, "check", name, "-t", kind, "--json")
    finally:
        if running:
            client.terminate_model(name)
    report = json.loads(ran.stdout)
    assert [r["name"] for r in report["rows"]] == rows
    assert all(r["status"] == "ok" for r in report["rows"]), report["rows"]
    assert ran.returncode == 0 and report["launched_for_the_check"] is not running and report["fixes"] == {}
    assert report["seconds"] < 90  # the budget is 60 s a bundled model: measured 26-48 s (loose here)
    if running:  # the model the check found running is the one it checked
        assert "(context 1024" in next(r["figure"] for r in report["rows"] if r["name"] == "context length")
    assert name not in json.dumps(client.list_models())  # the one launched for the check is let go


#: A ChatML template that tells the model how to call in Hermes' syntax (as Qwen's and SmolLM2's training had it).
HERMES_TOOLS = (
    "{%- if tools %}<|im_start|>system\nYou are a function calling AI model. You are given function signatures "
    "within <tools></tools> XML tags. For each function call, return a JSON object with the function name and "
    "arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call>\n<tools>\n{% for t in tools %}{{ t | tojson }}\n{% endfor %}</tools>"
    "<|im_end|>\n{% endif %}{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}<|im_start|>assistant\n")

BROKEN = {
    # the template asks for Hermes' <tool_call>, the spec's parser reads llama3's bare JSON
    "wrong-parser": ({"model_ability": ["chat", "tools"], "tool_parser": "llama3", "chat_template": HERMES_TOOLS,
                      "stop": ["<|im_end|>"]}, "tools", {"tool_parser": "hermes"}),
    "wrong-style": ({"model_ability": ["chat"], "prompt_style": "LLAMA2"}, "chat format",
                    {"prompt_style": None, "chat_template": None}),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_spec_is_flagged_with_its_fix(server: ServerProcess, small_gguf: Path, case: str) -> None:
    fields, row, fix = BROKEN[case]
    # (a context of 512: the check's context row reads a prompt of 80% of it, at 240 tokens a second here)
    spec = json.loads(gguf_spec(f"smol-{case}", small_gguf, version=2, context_length=512))
    spec.pop("stop", None)
    spec.update(fields)
    client = Client(server.url)
    client.register_model("LLM", json.dumps(spec), persist=True)
    try:
        ran = cli(server, "check", f"smol-{case}", "--json")
        report = json.loads(ran.stdout)
        assert ran.returncode == 1, json.dumps(report["rows"], indent=1)
        flagged = {r["name"]: r for r in report["rows"] if r["status"] == "fail"}
        assert set(flagged) == {row}, report["rows"]
        assert flagged[row]["fix"] == fix and flagged[row]["cause"]
        if case == "wrong-parser":  # --fix: the corrected spec registered in its place, and it passes
            fixed = cli(server, "check", f"smol-{case}", "--fix", "--yes", "--only", row)  # (the row alone)
            assert "registered the corrected" in fixed.stderr, fixed.stderr
            assert client.get_model_registration("LLM", f"smol-{case}")["tool_parser"] == "hermes"
            again = cli(server, "check", f"smol-{case}", "--only", "tools", "--json")  # the fixed row alone
            assert [(r["name"], r["status"]) for r in json.loads(again.stdout)["rows"]] == [("tools", "ok")]
    finally:
        client.unregister_model("LLM", f"smol-{case}")


def test_only_a_row_a_model_type_has(server: ServerProcess) -> None:
    ran = cli(server, "check", "demo-minilm", "-t", "embedding", "--only", "tools")
    assert ran.returncode != 0 and "Traceback" not in ran.stderr and len(ran.stderr.strip().splitlines()) == 1
    assert "no such row in a check of embedding models: tools (its rows: dimensions, similarity)" in ran.stderr
    assert Client(server.url).list_models() == {}  # refused before anything launched
