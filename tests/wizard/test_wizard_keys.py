"""The wizard driven end to end by real key presses fed into prompt_toolkit, against a real server."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from tests.conftest import xitui_cmd
from tests.model_files import minilm_dir, reranker_dir
from tests.server.conftest import ServerProcess, gguf_spec
from xitui.client import Client
from xitui.core.specs.spec import parse_spec
from xitui.wizard import CANCELLED, Cancelled, Options, Wizard, run_wizard

#: Its sentence-transformers launches fork from a warm worker that imported that library (~1 s, against ~6 s cold).
WARM = "llama.cpp,sentence_transformers"

ENTER, DOWN, SPACE, CTRL_C, BACK = "\r", "\x1b[B", " ", "\x03", "<"
#: At "what now" (all four checked): keep "save", uncheck register, persist and launch.
SAVE_ONLY = DOWN + SPACE + DOWN + SPACE + DOWN + SPACE + ENTER


def drive(options: Options, keys: list[str], url: str) -> tuple[Wizard | Cancelled, str]:
    """Run the wizard with `keys` typed in order; returns the wizard (or the Cancelled) and what it printed.
    When the keys run out the wizard sees end of input (Ctrl-D), so a test never hangs on a question."""
    from prompt_toolkit.application import create_app_session
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    shown = io.StringIO()
    console = Console(file=shown, width=120, force_terminal=False, color_system=None)
    with create_pipe_input() as pipe:
        pipe.send_text("".join(keys))
        pipe.close()
        with create_app_session(input=pipe, output=DummyOutput()):
            try:
                result: Wizard | Cancelled = run_wizard(options, console, lambda: Client(url))
            except Cancelled as exc:
                result = exc
    return result, shown.getvalue()


def registered(url: str, model_type: str = "LLM") -> set[str]:
    return {r["model_name"] for r in Client(url).list_model_registrations(model_type)}


#: Keys for a GGUF source given on the command line, every proposal taken except a 2048-token context:
#: type, name, family, abilities, languages, context, description, Hub id, chat format (a style), the style,
#: the preview, the review, what now (all four), save path, test prompt.
GGUF_KEYS = [ENTER, ENTER, ENTER, ENTER, ENTER, "2048" + ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER,
             ENTER, ENTER]


def test_gguf_save_register_launch_and_a_prompt(server: ServerProcess, gguf_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "gemma.json"
    options = Options(source=str(gguf_path), output=out, name="wz-gemma")
    w, shown = drive(options, GGUF_KEYS, server.url)
    assert isinstance(w, Wizard), shown
    spec = json.loads(out.read_text())
    assert spec["model_name"] == "wz-gemma" and spec["context_length"] == 2048
    assert spec["prompt_style"].upper() == "GEMMA"
    assert "<start_of_turn>user" in shown  # the preview showed the rendered conversation
    # the review showed the launch's memory estimate: 2048 tokens of KV cache at 18 KiB each, shared by the
    # slots the machine gets (one per 512 tokens of cache here)
    assert "at launch on this machine: needs about" in shown
    assert "KV cache 36.0 MiB for 2048 tokens shared by 4 slots" in " ".join(shown.split())
    client = Client(server.url)
    assert client.get_model_registration("LLM", "wz-gemma")["context_length"] == 2048
    assert (server.home / "model" / "llm" / "wz-gemma.json").is_file()  # persisted
    assert w.launched_uid == "wz-gemma" and client.describe_model("wz-gemma")["state"] == "ready"
    assert "tokens/s" in shown and "first after" in shown
    assert client.describe_model("wz-gemma")["metrics"]["requests"] == 1  # the test prompt ran
    client.terminate_model("wz-gemma")
    client.unregister_model("LLM", "wz-gemma")


def test_pytorch_directory_saved_only(server: ServerProcess, gemma_pt_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "pt.json"
    # type, name, family, abilities, languages, context, description, Hub id, chat format, style, preview,
    # review, what now: only "save" (uncheck register, persist, launch), save path
    keys = [ENTER, "wz-pt" + ENTER, ENTER, ENTER, ENTER, "4096" + ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER,
            SAVE_ONLY, ENTER]
    w, shown = drive(Options(source=str(gemma_pt_dir), output=out), keys, server.url)
    assert isinstance(w, Wizard), shown
    family = parse_spec("LLM", out.read_text())
    assert family.model_name == "wz-pt" and family.context_length == 4096
    assert family.model_specs[0].model_format == "pytorch" and family.model_specs[0].quantization == "none"
    assert "weights 1023 MiB" in " ".join(shown.split())  # 268M float32 parameters, in the review's estimate
    assert "wz-pt" not in registered(server.url)


def test_embedding_directory_register_and_launch(server: ServerProcess, tmp_path: Path) -> None:
    # type, name, languages, dimensions, max tokens, Hub id, review, what now (uncheck save, persist), ...
    what_now = SPACE + DOWN + DOWN + SPACE + ENTER
    keys = [ENTER, "wz-minilm" + ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, what_now]
    w, shown = drive(Options(source=str(minilm_dir())), keys, server.url)
    assert isinstance(w, Wizard), shown
    client = Client(server.url)
    registration = client.get_model_registration("embedding", "wz-minilm")
    assert registration["dimensions"] == 384 and registration["max_tokens"] == 256
    assert not (server.home / "model" / "embedding" / "wz-minilm.json").exists()  # not persisted
    assert "384 dimensions" in shown
    vectors = client.get_model("wz-minilm").create_embedding(["a", "b"])
    assert len(vectors["data"]) == 2
    client.terminate_model("wz-minilm")
    client.unregister_model("embedding", "wz-minilm")


def test_the_last_step_checks_the_spec_and_applies_its_fix(server: ServerProcess, small_gguf: Path,
                                                           tmp_path: Path) -> None:
    """"check it" at the last step runs `xitui check` on what was registered: a context longer than the file's
    is flagged, and after a yes the corrected spec is registered in its place and saved over the file."""
    out = tmp_path / "smol.json"
    # every proposal but a 100000-token context; what now: save, register, check (uncheck persist and launch);
    # save path; then yes to the fix
    what_now = DOWN + DOWN + SPACE + DOWN + SPACE + DOWN + SPACE + ENTER
    keys = [ENTER, "wz-checked" + ENTER, ENTER, ENTER, ENTER, "100000" + ENTER, *[ENTER] * 5, what_now, ENTER,
            ENTER]
    w, shown = drive(Options(source=str(small_gguf), output=out), keys, server.url)
    assert isinstance(w, Wizard), shown
    client = Client(server.url)
    try:
        row = next(line for line in shown.splitlines() if "context length" in line)
        assert "FAIL" in row and "declared 100000" in row and "context_length=8192" in row, shown
        assert "registered the corrected wz-checked" in shown
        assert client.get_model_registration("LLM", "wz-checked")["context_length"] == 8192
        assert json.loads(out.read_text())["context_length"] == 8192
        assert "wz-checked" not in json.dumps(client.list_models())  # launched for the check, then let go
    finally:
        client.unregister_model("LLM", "wz-checked")


def test_several_projectors_beside_a_gguf_are_asked_about(server: ServerProcess, tmp_path: Path) -> None:
    """A folder with a vision GGUF and its projector in two precisions: the wizard asks which projector
    (proposing the f16 one) and writes the one chosen; the spec says vision."""
    from tests.wizard.test_inspect import vision_folder

    (tmp_path / "vlm").mkdir()
    folder = vision_folder(tmp_path / "vlm", ("mmproj-tiny-vlm-f16.gguf", 64), ("mmproj-tiny-vlm-f32.gguf", 64))
    out = tmp_path / "vlm.json"
    # type, the projector (the second: f32), name and the rest as proposed, what now: save only, save path
    keys = [ENTER, DOWN + ENTER, *[ENTER] * 10, SAVE_ONLY, ENTER]
    w, shown = drive(Options(source=str(folder), output=out), keys, server.url)
    assert isinstance(w, Wizard), shown
    spec = json.loads(out.read_text())
    assert spec["model_specs"][0]["multimodal_projectors"] == ["mmproj-tiny-vlm-f32.gguf"]
    assert "vision" in spec["model_ability"]


def test_cross_encoder_directory_is_a_rerank_model(server: ServerProcess) -> None:
    """A cross-encoder's folder is recognised as a rerank model; registered and launched, the wizard's try
    ranks the passage that answers its question first."""
    # type (rerank, proposed), name, languages, max tokens, Hub id, review, what now (uncheck save, persist)
    what_now = SPACE + DOWN + DOWN + SPACE + ENTER
    keys = [ENTER, "wz-rerank" + ENTER, ENTER, "128" + ENTER, ENTER, ENTER, what_now]
    w, shown = drive(Options(source=str(reranker_dir())), keys, server.url)
    assert isinstance(w, Wizard), shown
    client = Client(server.url)
    registration = client.get_model_registration("rerank", "wz-rerank")
    assert registration["max_tokens"] == 128 and registration["type"] == "normal"
    ranked = [line.split(None, 2)[2] for line in shown.splitlines() if line.startswith(("  1. ", "  2. ", "  3. "))]
    assert ranked[0] == "The fox lives in the forest and eats berries.", shown
    client.terminate_model("wz-rerank")
    client.unregister_model("rerank", "wz-rerank")


def test_back_from_the_review_to_the_chat_format(server: ServerProcess, gguf_path: Path, tmp_path: Path) -> None:
    """`<` at the review returns to the chat format; choosing another style there changes the spec."""
    out = tmp_path / "back.json"
    to_llama2 = "\x1b[A" * 25 + DOWN * 8  # from GEMMA (26th) to the top, then down to LLAMA2 (9th)
    keys = [ENTER, "wz-back" + ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER,
            ENTER, ENTER, ENTER,  # chat format: style GEMMA, accepted
            BACK,  # at the review: back to the chat format
            ENTER, to_llama2 + ENTER, ENTER,  # a builtin style, LLAMA2, accepted
            ENTER,  # review: continue
            SAVE_ONLY, ENTER]
    w, shown = drive(Options(source=str(gguf_path), output=out), keys, server.url)
    assert isinstance(w, Wizard), shown
    spec = json.loads(out.read_text())
    assert spec["prompt_style"] == "LLAMA2", shown
    assert "[INST]" in shown.split("preview")[-1]


def test_an_invalid_then_a_valid_name(server: ServerProcess, gguf_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "named.json"
    keys = [ENTER, "bad name!" + ENTER, "\x7f" * 9 + "llama-2-chat" + ENTER, "\x7f" * 12 + "wz-named" + ENTER,
            ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, SAVE_ONLY, ENTER]
    w, shown = drive(Options(source=str(gguf_path), output=out), keys, server.url)
    assert isinstance(w, Wizard), shown
    assert json.loads(out.read_text())["model_name"] == "wz-named"


def test_a_taken_name_offers_another_or_replacing(server: ServerProcess, gguf_path: Path, tmp_path: Path) -> None:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("wz-taken", gguf_path))
    try:
        keys = [ENTER, "wz-taken" + ENTER, DOWN + ENTER,  # taken: replace it
                ENTER, ENTER, ENTER, "1024" + ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER,
                SPACE + DOWN + DOWN + SPACE + DOWN + SPACE + ENTER]  # what now: register only
        w, shown = drive(Options(source=str(gguf_path)), keys, server.url)
        assert isinstance(w, Wizard), shown
        assert "already registered" in shown or w.draft.replace
        assert client.get_model_registration("LLM", "wz-taken")["context_length"] == 1024
        keys = [ENTER, "wz-taken" + ENTER, ENTER, "wz-other" + ENTER,  # taken: choose another name
                ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER,
                SPACE + DOWN + DOWN + SPACE + DOWN + SPACE + ENTER]
        w, shown = drive(Options(source=str(gguf_path)), keys, server.url)
        assert isinstance(w, Wizard), shown
        assert {"wz-taken", "wz-other"} <= registered(server.url)
        client.unregister_model("LLM", "wz-other")
    finally:
        client.unregister_model("LLM", "wz-taken")


@pytest.mark.parametrize("presses", [
    [CTRL_C],  # at the first question
    [ENTER, "wz-cancel" + ENTER, CTRL_C],  # at the family
    [ENTER, "wz-cancel" + ENTER] + [ENTER] * 8 + [CTRL_C],  # at the preview
    [ENTER, "wz-cancel" + ENTER] + [ENTER] * 10 + [CTRL_C],  # at "what now"
    [ENTER, "wz-cancel" + ENTER] + [ENTER] * 11 + [CTRL_C],  # at the save path, everything chosen
])
def test_ctrl_c_leaves_nothing_behind(server: ServerProcess, gguf_path: Path, tmp_path: Path,
                                      presses: list[str]) -> None:
    out = tmp_path / "cancel.json"
    result, shown = drive(Options(source=str(gguf_path), output=out), presses, server.url)
    assert isinstance(result, Cancelled) and str(result) == CANCELLED
    assert not out.exists()
    assert "wz-cancel" not in registered(server.url)


def test_a_failed_launch_undoes_the_save_and_the_registration(server: ServerProcess, gguf_path: Path,
                                                              tmp_path: Path) -> None:
    """A GGUF whose header reads but whose weights are cut off: the launch fails, nothing is left behind."""
    folder = tmp_path / "broken"
    folder.mkdir()
    with open(gguf_path, "rb") as src:
        (folder / "broken-q4_k_m.gguf").write_bytes(src.read(8 * 2**20))
    out = tmp_path / "broken.json"
    keys = [ENTER, "wz-broken" + ENTER] + [ENTER] * 13
    from xitui.core.errors import XituiError

    with pytest.raises(XituiError, match="could not launch"):
        drive(Options(source=str(folder / "broken-q4_k_m.gguf"), output=out), keys, server.url)
    assert not out.exists() and "wz-broken" not in registered(server.url)
    assert "wz-broken" not in Client(server.url).list_models()


def test_from_spec_round_trips_a_version_1_spec(gguf_path: Path, tmp_path: Path) -> None:
    """`--from-spec` with a v1 spec and `--yes` writes the equal v2 spec, with no server at all."""
    v1 = tmp_path / "v1.json"
    v1.write_text(gguf_spec("wz-v1", gguf_path, version=1, model_description="from the docs",
                            prompt_style={"style_name": "LLAMA2", "system_prompt": "Be kind.",
                                          "roles": ["[INST]", "[/INST]"], "intra_message_sep": " ",
                                          "inter_message_sep": " </s><s>", "stop_token_ids": [2]}))
    out = tmp_path / "v2.json"
    proc = subprocess.run([*xitui_cmd(), "wizard", "--from-spec", str(v1), "--yes", "--output", str(out),
                           "-e", "http://127.0.0.1:9"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    written = json.loads(out.read_text())
    assert written["version"] == 2 and "quantizations" not in written["model_specs"][0]
    assert parse_spec("LLM", written).registration() == parse_spec("LLM", v1.read_text()).registration()


def test_yes_takes_every_proposal_and_never_overwrites(gguf_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "auto.json"
    cmd = [*xitui_cmd(), "wizard", str(gguf_path), "--yes", "--output", str(out), "-e", "http://127.0.0.1:9"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["model_name"] == "gemma-3-270m"
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "never overwrites" in again.stderr and "Traceback" not in again.stderr
    no_source = subprocess.run([*xitui_cmd(), "wizard", "--yes", "--output", str(tmp_path / "x.json")],
                               capture_output=True, text=True, timeout=60)
    assert no_source.returncode == 1 and "no proposed answer for 'source'" in no_source.stderr


def test_without_a_terminal_and_without_yes_one_line_says_what_to_do(gguf_path: Path) -> None:
    proc = subprocess.run([*xitui_cmd(), "wizard", str(gguf_path)], capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1 and "--yes" in proc.stderr and "xitui register --file" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_the_wizard_imports_no_model_or_ui_framework(gguf_path: Path) -> None:
    code = ("import sys; from xitui.wizard import run_wizard; from xitui.cli import wizard_commands; "
            "import xitui.wizard.steps, xitui.wizard.finish, xitui.wizard.review, xitui.wizard.chat_format; "
            "print(sorted(m for m in ('torch', 'llama_cpp', 'textual', 'fastapi', 'transformers') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_a_hub_id_offline_asks_what_the_files_would_have_said(server: ServerProcess, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Offline, a Hub id gets one note and the questions the files would have answered: format, size,
    quantizations, file name template; the spec then downloads by model_id at launch."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "hub.json"
    keys = [ENTER,  # type: LLM
            ENTER, "7" + ENTER, "Q4_K_M, Q8_0" + ENTER, "mistral-7b-{quantization}.gguf" + ENTER,  # the weights
            ENTER, ENTER, ENTER, ENTER, ENTER, ENTER, ENTER,  # name, family, abilities, languages, context, ...
            ENTER,  # review
            SAVE_ONLY, ENTER]
    w, shown = drive(Options(source="TheBloke/Mistral-7B-GGUF", output=out), keys, server.url)
    assert isinstance(w, Wizard), shown
    assert "offline" in shown
    family = parse_spec("LLM", out.read_text())
    assert family.model_name == "Mistral-7B-GGUF"
    assert [(s.model_format, s.quantization, s.model_id) for s in family.model_specs] == [
        ("ggufv2", "Q4_K_M", "TheBloke/Mistral-7B-GGUF"), ("ggufv2", "Q8_0", "TheBloke/Mistral-7B-GGUF")]
    assert family.model_specs[0].model_file_name_template == "mistral-7b-{quantization}.gguf"
    proc = subprocess.run([*xitui_cmd(), "wizard", "TheBloke/Mistral-7B-GGUF", "--yes", "--output",
                           str(tmp_path / "y.json")], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 1 and "no proposed answer for 'model_format'" in proc.stderr, proc.stderr
