"""`xitui doctor`: one line per finding with what to do; exit code 1 when any is an error; --json."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.conftest import run_env, xitui_cmd
from tests.server.conftest import gguf_spec


def doctor(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*xitui_cmd(), "doctor", "-e", "http://127.0.0.1:9", *args], capture_output=True,
                          text=True, timeout=120, env=run_env(XITUI_HOME=str(home), **env))


def test_a_healthy_home_is_all_ok_or_warnings(xitui_home: Path) -> None:
    done = doctor(xitui_home)
    assert done.returncode == 0, done.stdout
    assert "warning: no server runs at http://127.0.0.1:9" in done.stdout
    assert all(line.split(":")[0] in ("ok", "warning") for line in done.stdout.splitlines())


def test_broken_registrations_cache_and_config_are_errors(xitui_home: Path, gguf_path: Path, tmp_path: Path) -> None:
    llm = xitui_home / "model" / "llm"
    llm.mkdir(parents=True)
    gone = tmp_path / "gone"
    gone.mkdir()
    (gone / "gemma-3-270m-q4_k_m.gguf").write_bytes(b"")
    (llm / "moved.json").write_text(gguf_spec("moved", gguf_path.parent / "elsewhere" / "x.gguf", version=2))
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "gemma-3-270m-q4_k_m.gguf").write_bytes(b"not a model" * 10)
    (llm / "fake.json").write_text(gguf_spec("fake", fake / "gemma-3-270m-q4_k_m.gguf", version=2))
    (llm / "old.json").write_text(json.dumps({"model_name": "old", "model_specs": []}))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    (xitui_home / "config.toml").write_text("endpoint = ")
    done = doctor(xitui_home, HF_HUB_CACHE=str(blocker / "cache"))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert any(line.startswith("error: ") and "not valid TOML" in line for line in lines)
    assert any("LLM moved:" in line and "is missing" in line and "unregister" in line for line in lines)
    assert any("LLM fake:" in line and "not a GGUF file" in line for line in lines)
    assert any("old.json would not validate" in line and "model_specs" in line for line in lines)
    assert any("download cache" in line and "not writable" in line for line in lines)
    assert "Traceback" not in done.stderr
    as_json = json.loads(doctor(xitui_home, "--json", HF_HUB_CACHE=str(blocker / "cache")).stdout)
    assert {f["level"] for f in as_json} >= {"error"} and all(set(f) == {"level", "what", "fix"} for f in as_json)
