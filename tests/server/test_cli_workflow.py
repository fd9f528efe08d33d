"""The documented workflow through the `xitui` command in real subprocesses, including piped stdin."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import xitui_cmd
from tests.server.conftest import ServerProcess, gguf_spec

PROMPT = "The capital of France is Paris. The capital of Germany is"


def xitui(server: ServerProcess, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [*xitui_cmd(), *args, "-e", server.url], input=stdin, capture_output=True, text=True, timeout=120,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_register_launch_generate_chat_terminate_unregister(server: ServerProcess, gguf_path: Path, tmp_path: Path) -> None:
    spec = tmp_path / "model.json"
    spec.write_text(gguf_spec("cli-gemma", gguf_path))
    assert "registered LLM model cli-gemma" in xitui(server, "register", "--model-type", "LLM", "--file", str(spec)).stderr

    listed = xitui(server, "registrations", "--model-type", "LLM").stdout
    assert any(line.split("\t")[:2] == ["cli-gemma", "custom"] for line in listed.splitlines())
    as_json = json.loads(xitui(server, "registrations", "--model-type", "LLM", "--json").stdout)
    assert {"model_name": "cli-gemma", "is_builtin": False} in as_json

    launched = xitui(server, "launch", "--model-name", "cli-gemma", "--model-format", "ggufv2")
    assert launched.stdout == "cli-gemma\n"
    try:
        # piped stdin is one prompt; only the generated text comes out
        out = xitui(server, "generate", "--model-uid", "cli-gemma", "--max-tokens", "8", "--temperature", "0",
                    stdin=PROMPT)
        assert "Berlin" in out.stdout
        whole = json.loads(xitui(server, "generate", "-u", "cli-gemma", "--max-tokens", "8", "--temperature", "0",
                                 "--json", stdin=PROMPT).stdout)
        assert whole["choices"][0]["text"] == out.stdout  # streaming and not agree, nothing added

        stopped = xitui(server, "generate", "-u", "cli-gemma", "--max-tokens", "30", "--temperature", "0",
                        "--stop", "Berlin", stdin=PROMPT).stdout
        assert stopped == " "  # what came before the stop word, and nothing after it

        reply = xitui(server, "chat", "--model-uid", "cli-gemma", "--system", "Answer briefly.", "--max-tokens", "20",
                      stdin="Name a colour.")
        assert reply.stdout.strip() and "<end_of_turn>" not in reply.stdout

        rows = json.loads(xitui(server, "list", "--json").stdout)
        assert rows["cli-gemma"]["state"] == "ready"
        assert rows["cli-gemma"]["metrics"]["requests"] >= 4
        table = xitui(server, "list").stdout.splitlines()
        assert table[0].split("\t")[:6] == ["uid", "name", "type", "format", "engine", "state"]
        assert table[1].split("\t")[5] == "ready"

        # the worker's log: its end, then followed while the model writes more
        worker_log = xitui(server, "logs", "-u", "cli-gemma").stdout
        assert "llama" in worker_log  # llama.cpp's own lines, and the worker's line on what it loaded and how
        assert f"cli-gemma loaded from {gguf_path}" in worker_log and "engine llama.cpp, device cpu" in worker_log
        assert len(xitui(server, "logs", "-u", "cli-gemma", "--bytes", "10").stdout) <= 10
        follow = subprocess.Popen([*xitui_cmd(), "logs", "-u", "cli-gemma", "-f", "--bytes", "0", "-e", server.url],
                                  stdout=subprocess.PIPE, text=True)
        try:
            second = json.loads(xitui(server, "launch", "--model-name", "cli-gemma", "--model-uid", "cli-gemma-2",
                                      "--json").stdout)
            assert second["model_uid"] == "cli-gemma-2" and second["state"] == "ready" and second["slots"] >= 1
            with open(server.home / "logs" / "cli-gemma.log", "a") as log:  # what a worker prints, as it prints it
                log.write("a line written after the follow began\n")
            assert follow.stdout.readline() == "a line written after the follow began\n"
        finally:
            follow.terminate()
        assert "replica 3" in xitui(server, "logs", "-u", "cli-gemma", "--replica", "3", check=False).stderr
    finally:
        stopped = xitui(server, "terminate", "--all").stderr
    assert "terminated cli-gemma\n" in stopped and "terminated cli-gemma-2\n" in stopped
    server_log = (server.home / "test-server.log").read_text()  # what an operator reads: launches and their ends
    assert "xitui: model cli-gemma ready in " in server_log and "xitui: model cli-gemma terminated" in server_log
    assert json.loads(xitui(server, "list", "--json").stdout) == {}
    xitui(server, "unregister", "--model-type", "LLM", "--model-name", "cli-gemma")
    assert "cli-gemma" not in xitui(server, "registrations").stdout


def test_register_takes_the_spec_as_an_argument_and_guesses_its_type(server: ServerProcess, gguf_path: Path,
                                                                      tmp_path: Path) -> None:
    """`xitui register spec.json` (no -t, no -f) registers what the spec is, as `xitui validate` reads it: a
    rerank spec as a rerank model, an LLM spec from stdin as an LLM."""
    from tests.model_files import reranker_dir

    rerank = tmp_path / "rr.json"
    rerank.write_text(json.dumps({"version": 2, "model_name": "guessed-rr", "type": "normal", "max_tokens": 96,
                                  "language": ["en"], "model_specs": [{"model_format": "pytorch", "quantization":
                                                                       "none", "model_uri": str(reranker_dir())}]}))
    assert "registered rerank model guessed-rr" in xitui(server, "register", str(rerank)).stderr
    assert "guessed-rr" in xitui(server, "registrations", "-t", "rerank", "--custom").stdout
    piped = xitui(server, "register", "-", stdin=gguf_spec("guessed-llm", gguf_path))
    assert "registered LLM model guessed-llm" in piped.stderr
    # legal but likely wrong (a chat family declared generate-only): registered, with a warning
    warned = xitui(server, "register", "-", stdin=gguf_spec("warned-llm", gguf_path, model_family="llama-2-chat",
                                                            model_ability=["generate"]))
    assert warned.returncode == 0 and "registered LLM model warned-llm" in warned.stderr
    assert "warning: model_ability: llama-2-chat is a chat family" in warned.stderr
    for kind, name in (("rerank", "guessed-rr"), ("LLM", "guessed-llm"), ("LLM", "warned-llm")):
        xitui(server, "unregister", "-t", kind, "--model-name", name)


def test_cli_errors_are_one_line_with_nonzero_exit(server: ServerProcess, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "model_name": "x", "model_lang": ["en"], "model_ability": ["generate"],
                               "model_specs": [{"model_format": "ggufv2", "model_size_in_billions": 1,
                                                "quantizations": ["q4_0"], "model_id": "a/b"}]}))
    cases = [
        ("register", "--model-type", "LLM", "--file", str(bad)),
        ("register", "--model-type", "LLM", "--file", str(tmp_path / "missing.json")),
        ("register", "--model-type", "image", "--file", str(bad)),
        ("launch", "--model-name", "no-such-model"),
        ("generate", "--model-uid", "nothing-runs-here"),
        ("terminate", "--model-uid", "nothing-runs-here"),
        ("terminate",),
        ("logs", "--model-uid", "nothing-runs-here"),
        ("unregister", "--model-type", "LLM", "--model-name", "llama-2-chat"),
        ("unregister", "--model-type", "LLM", "--model-name", "never-registered"),
        ("register",),
        ("register", str(bad), "--file", str(bad)),
    ]
    for args in cases:
        proc = xitui(server, *args, check=False, stdin="")
        assert proc.returncode != 0, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert "model_file_name_template" in xitui(server, *cases[0], check=False).stderr


def test_unreachable_remote_endpoint_is_one_line() -> None:
    proc = subprocess.run([*xitui_cmd(), "list", "-e", "http://192.0.2.1:1"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1
