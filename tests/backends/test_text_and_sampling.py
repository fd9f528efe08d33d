"""Pieces of the backends that decide what text a user sees: stop words while streaming, penalties."""

from __future__ import annotations

import pytest

from xitui.backends.base import GenerateParams, StopWords


def feed_all(words: list[str], pieces: list[str]) -> tuple[str, bool]:
    stops = StopWords(words)
    shown = []
    for piece in pieces:
        text, stopped = stops.feed(piece)
        shown.append(text)
        if stopped:
            return "".join(shown), True
    return "".join(shown) + stops.flush(), False


def test_stop_word_split_across_pieces_is_never_shown() -> None:
    assert feed_all(["</s>"], ["Hello", " wor", "ld<", "/", "s> more"]) == ("Hello world", True)


def test_held_back_text_that_was_not_a_stop_word_comes_out() -> None:
    stops = StopWords(["STOP"])
    assert stops.feed("go ST") == ("go ", False)  # "ST" might begin STOP
    assert stops.feed("ay") == ("STay", False)
    assert feed_all(["STOP"], ["the end ST"]) == ("the end ST", False)  # flushed at the end


def test_earliest_of_several_stop_words_wins() -> None:
    assert feed_all(["\n\n", "User:"], ["a User: b\n\n"]) == ("a ", True)


def test_no_stop_words_passes_text_through() -> None:
    assert feed_all([], ["a", "b"]) == ("ab", False)


def test_penalties_follow_llama_cpp_and_openai() -> None:
    torch = pytest.importorskip("torch")
    from xitui.backends.transformers import TransformersBackend

    logits = torch.tensor([2.0, -1.0, 3.0, 0.5])
    params = GenerateParams(repeat_penalty=2.0)
    out = TransformersBackend._penalise(logits, params, prompt_ids=[0], generated=[1])
    # seen tokens: positive logits divided, negative multiplied; unseen untouched
    assert out.tolist() == [1.0, -2.0, 3.0, 0.5]
    params = GenerateParams(presence_penalty=1.0, frequency_penalty=0.5)
    out = TransformersBackend._penalise(logits, params, prompt_ids=[0], generated=[2, 2, 3])
    assert out.tolist() == [2.0, -1.0, 3.0 - 1.0 - 1.0, 0.5 - 1.0 - 0.5]
    assert logits.tolist() == [2.0, -1.0, 3.0, 0.5]  # the model's own tensor is left alone
