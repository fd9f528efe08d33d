"""Where the transformers engine holds an answer to its grammar (backends/transformers.Held): an `auto` answer's
calls from their opening marker to their end with the text between free, a thinking model's answer from the
end of its thought, and a token that completes the marker and writes what the call's form refuses. On
SmolLM2's real vocabulary (its tokenizer, no weights), with llguidance's real matcher."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.slow  # (builds the tiny model directory once: torch and transformers)

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}}}


@pytest.fixture(scope="module")
def vocab() -> tuple[Any, Any]:
    """(SmolLM2's transformers tokenizer, llguidance's view of it)."""
    pytest.importorskip("llguidance")
    import llguidance.hf
    from transformers import AutoTokenizer

    from tests.model_files import tiny_pt_dir

    tokenizer = AutoTokenizer.from_pretrained(tiny_pt_dir())
    return tokenizer, llguidance.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer))


def held(vocab: tuple[Any, Any], constraint: dict[str, Any], trigger: str | None, once: bool = False) -> Any:
    from xitui.backends import guidance
    from xitui.backends.transformers import Held, _Guide

    tokenizer, view = vocab
    return Held(_Guide(view, guidance.compile_for(constraint, view)), tokenizer, trigger, once)


def write(guide: Any, tokenizer: Any, text: str) -> list[tuple[bool, bool, int]]:
    """Feed `text`'s tokens; for each: (held to the grammar when it was picked, the answer ends, characters cut)."""
    steps = []
    for token in tokenizer.encode(text, add_special_tokens=False):
        holding = guide.holding
        if holding:  # a token the grammar would not allow is a failure of the test's text, not of the engine
            import torch
            allowed = guide.allowed(torch.zeros(len(tokenizer)))
            assert allowed[token] == 0, f"refused {tokenizer.decode([token])!r}"
        steps.append((holding, *guide.took(token)))
    return steps


def calls(vocab: tuple[Any, Any]) -> Any:
    from xitui.core.chat_format import tool_calls

    return held(vocab, {"tool_call": {"schema": tool_calls.call_schema([WEATHER], "hermes"), "format": "hermes",
                                      "several": False, "after_trigger": True}}, "<tool_call>")


def test_an_auto_answer_is_free_until_it_opens_a_call_held_to_its_end_then_free_again(vocab) -> None:
    tokenizer, _ = vocab
    guide = calls(vocab)
    call = '\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    before = "I will look it up. <tool_call>"
    steps = write(guide, tokenizer, before)
    assert not any(h for h, _, _ in steps) and guide.holding  # free up to the marker, held from it
    steps = write(guide, tokenizer, call)
    assert all(h for h, _, _ in steps) and not any(end for _, end, _ in steps)
    assert not guide.holding  # the call is complete: the answer goes on, free, and may open another
    steps = write(guide, tokenizer, " Done, and a second one: <tool_call>" + call)
    assert not guide.holding and not any(end or cut for _, end, cut in steps)
    assert sum(1 for h, _, _ in steps if h) == len(tokenizer.encode(call, add_special_tokens=False))


def test_a_token_that_completes_the_marker_and_writes_what_the_call_refuses_is_cut(vocab) -> None:
    """SmolLM2 wrote `<tool_call><tool_value>`: `><` is one token. Its `<` is not given and the call is held
    from the marker, so the call the client reads parses."""
    tokenizer, _ = vocab
    tokens = tokenizer.encode("<tool_call><tool_value>", add_special_tokens=False)
    assert "><" in [tokenizer.decode([t]) for t in tokens]  # (the vocabulary this test is about)
    guide = calls(vocab)
    cut = 0
    for token in tokens:
        _, cut = guide.took(token)
        if guide.holding:
            break
    assert guide.holding and cut == 1
    steps = write(guide, tokenizer, '{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>')
    assert all(h for h, _, _ in steps) and not guide.holding


def test_a_thinking_answer_is_free_until_its_thought_ends_then_held_to_the_end(vocab) -> None:
    tokenizer, _ = vocab
    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 10}}, "required": ["city"],
              "additionalProperties": False}
    guide = held(vocab, {"json_schema": schema}, "</think>", once=True)
    steps = write(guide, tokenizer, "The tower is in Paris, so {the city} is Paris.</think>")
    assert not any(h or end for h, end, _ in steps) and guide.holding  # braces in a thought are free
    steps = write(guide, tokenizer, '{"city": "Paris"}')
    assert all(h for h, _, _ in steps) and steps[-1][1] and not any(end for _, end, _ in steps[:-1])


def test_without_a_trigger_the_answer_is_held_from_its_first_token(vocab) -> None:
    tokenizer, _ = vocab
    guide = held(vocab, {"gbnf": 'root ::= "yes" | "no"'}, None)
    assert guide.holding
    steps = write(guide, tokenizer, "yes")
    assert steps[-1][1]


def test_a_thought_that_would_end_unclosed_is_closed_for_it_then_held(vocab) -> None:
    """The end of the turn inside the thought: the end tag is written instead (a token at a time), then the
    answer is held to its form; outside a thought, or without a form waiting, an end is an end."""
    tokenizer, _ = vocab
    guide = held(vocab, {"json": True}, "</reason>", once=True)
    write(guide, tokenizer, "The tower is in Paris")
    end = tokenizer.eos_token_id
    written = []
    token = guide.instead(end, ends=True)
    while True:
        written.append(token)
        guide.took(token)
        if guide.holding:
            break
        token = guide.instead(12345, ends=False)  # (whatever the model says next: the tag's rest is written)
    assert tokenizer.decode(written) == "</reason>" and guide.holding
    assert guide.instead(end, ends=True) == end  # held to the form now: the grammar decides
    free = calls(vocab)
    assert free.instead(end, ends=True) == end  # an `auto` answer may end before it calls


def test_a_tag_written_for_the_model_stops_where_its_text_closed_the_thought(vocab) -> None:
    """"n.n." after "Ocean.": two of the tag's tokens close the thought ("n." + "n."); the rest is not written
    (it went into the answer: `n.{}`)."""
    tokenizer, _ = vocab
    guide = held(vocab, {"json": True}, "n.n.", once=True)
    write(guide, tokenizer, "The largest is the Pacific Ocean.")
    token = guide.instead(tokenizer.eos_token_id, ends=True)
    while not guide.holding:
        guide.took(token)
        token = guide.instead(12345, ends=False)
    assert guide.forced == [] and guide.instead(12345, ends=False) == 12345


def test_a_tag_that_is_the_end_of_the_turn_is_written_as_its_text(vocab) -> None:
    tokenizer, _ = vocab
    guide = held(vocab, {"json": True}, "<|im_end|>", once=True)
    first = guide.instead(tokenizer.eos_token_id, ends=True)
    written = [first, *guide.forced]
    assert tokenizer.eos_token_id not in written and tokenizer.decode(written) == "<|im_end|>"
