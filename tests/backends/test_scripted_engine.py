"""The scripted engine on its own (no worker, no server): what a script's rules make it write, and how it keeps
the Engine contract the worker relies on (a token a step per running request, slots, cancellation, errors)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from xitui import wire
from xitui.backends.base import GenerateParams
from xitui.backends.scripted import ScriptedBackend, ScriptedEngine, ScriptError, read_script
from xitui.core.errors import LaunchError


def engine(rules: list[dict[str, Any]], slots: int = 4, context: int = 256) -> tuple[ScriptedEngine, list[Any]]:
    sent: list[Any] = []
    return ScriptedEngine(read_script(rules), slots, context, sent.append), sent


def submit(eng: ScriptedEngine, rid: int, prompt: str, **params: Any) -> None:
    eng.submit(rid, [ord(c) for c in prompt], GenerateParams(**params), set())


def run(eng: ScriptedEngine, steps: int = 1000) -> None:
    while eng.busy and steps:
        eng.step()
        steps -= 1
    assert not eng.busy


def of(sent: list[Any], rid: int) -> list[Any]:
    return [m for m in sent if m["id"] == rid]


def test_the_first_matching_rule_is_written_a_token_a_step_then_done():
    eng, sent = engine([{"match": "bye", "reply": "Goodbye."}, {"reply": "Hello there, friend."}])
    submit(eng, 1, "say hi")
    eng.step()
    assert sent == [wire.text(1, "Hello")]
    run(eng)
    assert [m["text"] for m in sent if m["kind"] == "text"] == ["Hello", " there,", " friend."]
    done = sent[-1]
    assert done["kind"] == "done" and done["finish_reason"] == "stop"
    assert done["usage"] == {"prompt_tokens": 6, "completion_tokens": 3, "total_tokens": 9}


def test_max_tokens_ends_it_with_length_and_a_stop_word_with_stop():
    eng, sent = engine([{"reply": ["a", "b", "c"], "repeat": 100}])
    submit(eng, 1, "x", max_tokens=4)
    submit(eng, 2, "x", stop=["ca"])
    run(eng)
    assert "".join(m["text"] for m in of(sent, 1)[:-1]) == "abca"
    assert of(sent, 1)[-1]["finish_reason"] == "length" and of(sent, 1)[-1]["usage"]["completion_tokens"] == 4
    assert "".join(m["text"] for m in of(sent, 2)[:-1]) == "ab"  # "c" held back, then cut with the stop word
    assert of(sent, 2)[-1]["finish_reason"] == "stop" and of(sent, 2)[-1]["usage"]["completion_tokens"] == 4


def test_a_prompt_longer_than_the_context_is_the_callers_error():
    eng, _ = engine([{"reply": "x"}], context=8)
    with pytest.raises(Exception, match="the prompt is 9 tokens long; this model's context holds 8") as caught:
        submit(eng, 1, "123456789")
    assert getattr(caught.value, "status_code", None) == 400


def test_requests_beyond_the_slots_wait_and_run_side_by_side_within_them():
    eng, sent = engine([{"reply": "one two"}], slots=2)
    for rid in (1, 2, 3):
        submit(eng, rid, "q")
    eng.step()
    assert [m["id"] for m in sent] == [1, 2]
    run(eng)
    assert sent.index(of(sent, 3)[0]) > sent.index(of(sent, 1)[-1])  # the third starts once one ends
    assert all(of(sent, rid)[-1]["kind"] == "done" for rid in (1, 2, 3))


def test_a_cancelled_request_ends_with_no_more_messages_and_frees_its_slot():
    eng, sent = engine([{"reply": "tick", "repeat": 10_000}], slots=1)
    submit(eng, 1, "q")
    submit(eng, 2, "q", max_tokens=2)
    eng.step()
    eng.cancelled.add(1)
    run(eng)
    assert of(sent, 1) == [wire.text(1, "tick")]
    assert of(sent, 2)[-1]["kind"] == "done" and not eng.cancelled


def test_a_scripted_error_ends_its_request_alone_and_a_failure_ends_them_all():
    eng, sent = engine([{"match": "boom", "reply": "Half", "error": "scripted failure", "status": 503},
                        {"reply": "fine and well"}])
    submit(eng, 1, "boom")
    submit(eng, 2, "ok")
    run(eng)
    assert of(sent, 1) == [wire.text(1, "Half"), wire.failed(1, "scripted failure", 503)]
    assert of(sent, 2)[-1]["kind"] == "done"

    eng, sent = engine([{"match": "crash", "reply": "", "fail": "the engine broke"}, {"reply": "a", "repeat": 9}])
    submit(eng, 1, "ok")
    eng.step()
    submit(eng, 2, "crash")
    with pytest.raises(RuntimeError, match="the engine broke"):
        eng.step()
    eng.fail_all("the model failed: RuntimeError: the engine broke")  # what the worker does
    assert [(m["kind"], m["id"]) for m in sent[-2:]] == [("error", 1), ("error", 2)] and not eng.busy


def test_a_delay_paces_the_tokens_and_the_engine_waits_at_most_a_moment_for_them():
    clock = [100.0]
    naps: list[float] = []

    def sleep(seconds: float) -> None:
        naps.append(seconds)
        clock[0] += seconds

    eng, sent = engine([{"reply": "a b c", "delay": 0.5}])
    eng.clock, eng.sleep = lambda: clock[0], sleep
    submit(eng, 1, "q")
    for _ in range(75):
        eng.step()
    assert [m["text"] for m in sent] == ["a"]  # due at 0.5 s and 1.0 s: 0.75 s have passed
    assert max(naps) <= 0.01  # a request that comes meanwhile joins within 10 ms
    run(eng)
    assert [m["text"] for m in sent[:-1]] == ["a", " b", " c"] and sent[-1]["ttft"] == pytest.approx(0.5)


def test_echo_writes_what_the_engine_got_as_json_no_tag_or_stop_word_can_act_on():
    eng, sent = engine([{"match": "prompt", "echo": "prompt"}, {"echo": "params"}])
    submit(eng, 1, "prompt <|im_end|> <think>", stop=["<|im_end|>"])
    submit(eng, 2, "other", temperature=0.25, max_tokens=50, stop=["<"])
    run(eng)
    assert json.loads("".join(m["text"] for m in of(sent, 1)[:-1])) == "prompt <|im_end|> <think>"
    params = json.loads("".join(m["text"] for m in of(sent, 2)[:-1]))
    assert params["temperature"] == 0.25 and params["max_tokens"] == 50 and params["stop"] == ["<"]


def test_a_prompt_no_rule_matches_is_the_scripts_error():
    eng, _ = engine([{"match": "only this", "reply": "x"}, {"constraint": "json", "reply": "{}"}])
    with pytest.raises(ScriptError, match="the script has no rule for this prompt: 'something else'") as caught:
        submit(eng, 1, "something else")
    assert caught.value.status_code == 500
    submit(eng, 2, "something else", grammar={"json": True})  # what grammar_for gave the worker


@pytest.mark.parametrize(("script", "says"), [
    ({"rule": []}, "a script is a list of rules"),
    ([{"reply": 3}], "rules[0].reply: a string, or a list of strings"),
    ([{"reply": "x", "colour": "red"}], "rules[0]: unknown key 'colour'"),
    ([{"echo": "everything"}], "rules[0].echo: one of prompt, params, constraint"),
    ([{}, {"delay": -1}], "rules[1].delay: seconds, from 0 to 60"),
    ({"rules": [], "slots": 0}, "slots: a whole number, at least 1"),
])
def test_a_script_that_is_wrong_says_where(script: Any, says: str):
    with pytest.raises(ValueError, match=f"^{re.escape(says)}"):
        read_script(script)


def test_the_backend_loads_a_script_from_its_directory_and_names_a_bad_one(tmp_path: Path):
    settings: wire.Settings = {"model_type": "LLM", "model_name": "m", "engine": "scripted", "model_format": "pytorch",
                               "quantization": "none", "model_path": str(tmp_path), "model_id": None,
                               "model_revision": None, "file_name": None, "context_length": 512, "registration": {}}
    (tmp_path / "script.json").write_text(json.dumps({"rules": [{"reply": "x"}], "chat_template": "T"}))
    backend = ScriptedBackend()
    backend.set_sender(lambda msg: None)
    info = backend.load(settings, lambda value, stage: None)
    assert info["engine"] == "scripted" and info["n_parallel"] == 4 and info["context_length"] == 512
    assert backend.engine is not None and backend.model_chat_template == "T"
    assert backend.grammar_for({"json": True}) == {"json": True}
    (tmp_path / "script.json").write_text("[{")
    with pytest.raises(LaunchError, match=r"^the script .*script\.json: Expecting"):
        backend.load(settings, lambda value, stage: None)
