"""The offline CLI commands: the whole program run in-process (its entry point, one-line errors and exit codes:
tests/support/cli.py), and once as the installed script a user runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, xitui_cmd
from tests.core.test_spec import BROKEN
from tests.support.cli import xitui
from xitui import __version__


def test_version_from_the_installed_script_and_in_process() -> None:
    script = subprocess.run([*xitui_cmd(), "--version"], capture_output=True, text=True, timeout=60)
    assert script.returncode == 0 and script.stdout.strip() == f"xitui {__version__}"
    assert xitui("--version").stdout == script.stdout
    broken = subprocess.run([*xitui_cmd(), "validate", "/no/such/spec.json"], capture_output=True, text=True,
                            timeout=60)
    assert (broken.returncode, broken.stderr) == (1, xitui("validate", "/no/such/spec.json").stderr)


@pytest.mark.parametrize("name", sorted(p.name for p in EXAMPLES.glob("*.json")))
def test_validate_examples(name: str) -> None:
    result = xitui("validate", str(EXAMPLES / name))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["version"] == 2
    assert "is a valid" in result.stderr


def test_validate_says_a_ggml_file_is_converted_at_its_first_launch() -> None:
    result = xitui("validate", str(EXAMPLES / "custom-llama-2.json"))
    assert "a ggmlv3 file is converted to GGUF at its first launch" in result.stderr


def test_validate_broken_variants_one_line_each_no_traceback(tmp_path: Path) -> None:
    assert len(BROKEN) >= 30
    for description, model_type, spec, expected in BROKEN:
        path = tmp_path / "spec.json"
        path.write_text(spec if isinstance(spec, str) else json.dumps(spec))
        result = xitui("validate", "--model-type", model_type, str(path))
        assert result.returncode == 1, description
        assert result.stdout == "", description
        lines = result.stderr.splitlines()
        assert lines and all(line.startswith("error: ") for line in lines), (description, result.stderr)
        assert any(line[len("error: ") :].startswith(expected) for line in lines), (
            description,
            result.stderr,
        )
        assert "Traceback" not in result.stderr


def test_validate_reads_stdin_and_missing_file_is_one_line() -> None:
    ok = xitui("validate", "-", stdin=(EXAMPLES / "custom-bge-base-en.json").read_text())
    assert ok.returncode == 0 and json.loads(ok.stdout)["model_name"] == "custom-bge-base-en"
    missing = xitui("validate", "/no/such/spec.json")
    assert missing.returncode == 1
    assert missing.stderr.strip() == "error: cannot read /no/such/spec.json: No such file or directory"


def test_styles_list_and_one_style() -> None:
    listing = xitui("styles")
    assert listing.returncode == 0
    assert listing.stdout.splitlines()[0] == "style\troles\tstop"
    assert "LLAMA2\t[INST] / [/INST]\t</s>" in listing.stdout
    one = xitui("styles", "chatglm3")  # a family name finds its style
    assert one.returncode == 0
    assert "style_name: 'CHATGLM3'" in one.stdout
    assert "<|user|>\n How long can it grow?\n<|assistant|>" in one.stdout
    data = json.loads(xitui("styles", "gemma", "--json").stdout)
    assert data["roles"] == ["user", "model"] and data["sample"].endswith("<start_of_turn>model\n")
    unknown = xitui("styles", "nope")
    assert unknown.returncode == 1 and unknown.stderr.startswith("error: no builtin prompt style")


def test_config_set_and_show() -> None:
    assert xitui("config", "set", "theme", "light").returncode == 0
    shown = json.loads(xitui("config", "show", "--json").stdout)
    assert shown["settings"]["theme"] == "light"
    bad = xitui("config", "set", "generation.top_p", "high")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "error: generation.top_p: 'high' is not a valid float"


def test_help_imports_no_heavy_library() -> None:
    code = (
        "import sys; sys.argv=['xitui','--help']\n"
        "from xitui.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy=[m for m in ('torch','transformers','llama_cpp','textual','fastapi','uvicorn','sentence_transformers')"
        " if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY []" in result.stdout, result.stdout
    assert "validate" in result.stdout


def test_validate_warns_about_what_is_legal_but_likely_wrong(tmp_path: Path) -> None:
    seed = json.loads((EXAMPLES / "custom-llama-2.json").read_text())
    seed["model_family"] = "llama-2-chat"  # a chat family declared generate-only
    del seed["prompt_style"]
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(seed))
    result = xitui("validate", str(path))
    assert result.returncode == 0 and json.loads(result.stdout)["model_family"] == "llama-2-chat"
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: ")]
    assert warnings == ["warning: model_ability: llama-2-chat is a chat family but the spec says generate only: "
                        "its models answer turns, not raw text; add 'chat'"]
    del seed["model_family"]
    path.write_text(json.dumps(seed))
    assert "warning: model_family: not given, so 'other'" in xitui("validate", str(path)).stderr
