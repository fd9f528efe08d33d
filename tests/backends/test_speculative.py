"""Speculative decoding in the llama.cpp batch engine (prompt lookup drafts, verified in the same batch), on
the real SmolLM2 GGUF: greedy answers with drafts are those without (alone, two at once, held to a grammar,
ended by a stop word), a cancel while a draft is in the cache leaves it as a fresh one, and log probabilities
cover exactly the tokens written.

"The same" up to llama.cpp's rounding: on this CPU a token decoded beside others gets logits that differ from
the same token decoded alone (by up to 0.5 past ~220 cached tokens, measured), so where the model's likeliest
tokens are that close an answer may go the other way, as batched requests may. Each comparison holds the two
answers token for token to their first difference, and there the answer without drafts must have had the
other answer's token among its likeliest, that close: a draft misplaced, refused or kept wrongly would show as a token
the model did not nearly choose."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import THREADS
from xitui.backends.base import GenerateParams

pytestmark = pytest.mark.slow

CODE = '''def parse_config(path):
    """Read a config file of key = value lines into a dict."""
    result = {}
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            key, value = line.split("=", 1)
            result[key.strip()] = value.strip()
    return result
'''


def chat(text: str) -> str:
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"


REWRITE = chat(f"Rewrite this code with `result` renamed to `config`.\n\n```python\n{CODE}```")
QUOTE = chat("The ferry left Portsmouth at dawn and crossed to Ryde. A bus climbed inland through Newport, then "
             "south to Ventnor. Copy out the sentences that name a town.")
FREE = chat("Write a short story about a lighthouse keeper.")


class Engines:
    def __init__(self, llama_cpp: Any, path: str):
        from xitui.backends.guidance import llama_tokenizer
        from xitui.backends.llamacpp import llama_cpp_vocab
        from xitui.backends.llamacpp_batch import BatchEngine

        self.llm = llama_cpp.Llama(model_path=path, n_ctx=64, n_threads=THREADS, verbose=False)
        self.sent: dict[Any, list[dict[str, Any]]] = {}
        deliver = lambda msg: self.sent.setdefault(msg["id"], []).append(msg)  # noqa: E731
        self.on = BatchEngine(self.llm, slots=3, context=2048, threads=THREADS, send=deliver, speculative=True)
        self.off = BatchEngine(self.llm, slots=3, context=2048, threads=THREADS, send=deliver)
        self.tokenizer = llama_tokenizer(llama_cpp_vocab(self.llm))
        self.ids = 0
        #: (answers being written, drafts made) at each of the speculating engine's steps
        self.drafting: list[tuple[list, dict]] = []
        made = self.on._drafts

        def noted(decoding: list) -> dict:
            drafts = made(decoding)
            self.drafting.append((list(decoding), drafts))
            return drafts

        self.on._drafts = noted

    def run(self, engine: Any, prompts: list[str], cancel_after: int | None = None, **params: Any) -> list[dict]:
        """Each prompt's answer (text, done, logprobs), the prompts submitted at once; `cancel_after` steps,
        the first one is cancelled."""
        rids = []
        for prompt in prompts:
            self.ids += 1
            request = {"max_tokens": 100, "temperature": 0, **params}
            if "json_schema" in request:
                from xitui.backends.guidance import Guide, compile_for

                schema = request.pop("json_schema")
                request["grammar"] = Guide(self.tokenizer, compile_for({"json_schema": schema}, self.tokenizer))
            grammar = request.pop("grammar", None)
            made = GenerateParams.from_request(request)
            made.grammar = grammar
            engine.submit(self.ids, self.llm.tokenize(prompt.encode(), special=True), made, set())
            rids.append(self.ids)
        steps = 0
        while engine.busy:
            engine.step()
            steps += 1
            if cancel_after is not None and steps == cancel_after:
                engine.cancel(rids[0])
        out = []
        for rid in rids:
            got = self.sent.get(rid, [])
            out.append({"text": "".join(m.get("text", "") for m in got if m["kind"] == "text"),
                        "done": next((m for m in got if m["kind"] == "done"), None),
                        "logprobs": [e for m in got if m["kind"] == "text" for e in m.get("logprobs", [])]})
        return out


@pytest.fixture(scope="module")
def engines() -> Iterator[Engines]:
    llama_cpp = pytest.importorskip("llama_cpp")
    from xitui.core.specs import bundled

    made = Engines(llama_cpp, str(bundled._package_dir(bundled.SMOLLM_PACKAGE) / bundled.SMOLLM_FILE))
    yield made
    made.llm.close()


def tokens_of(answer: dict) -> int:
    return answer["done"]["usage"]["completion_tokens"]


#: How close the model's likeliest tokens are (log probabilities) where two answers may differ by rounding.
NEAR_TIE = 0.5


def same_up_to_a_near_tie(with_drafts: dict, without: dict) -> bool:
    """The answers' tokens (from their log probabilities, top 2 asked) agree to the end, or to a place where
    the answer without drafts had the other's token among its likeliest, within NEAR_TIE. True when they agree
    whole."""
    a, b = with_drafts["logprobs"], without["logprobs"]
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x["token"] != y["token"]:
            second = [t for t in y["top_logprobs"] if t["token"] == x["token"]]
            assert second and y["logprob"] - second[0]["logprob"] <= NEAR_TIE, (i, x, y)
            return False
    assert len(a) == len(b) and with_drafts["text"] == without["text"]
    return True


@pytest.mark.parametrize("prompts", [[REWRITE], [FREE], [REWRITE, QUOTE], [QUOTE, REWRITE, FREE]],
                         ids=["rewrite", "free", "two-at-once", "three-at-once"])
def test_greedy_answers_are_the_same_with_drafts_and_without(engines: Engines, prompts: list[str]) -> None:
    drafted = engines.on.drafted
    with_drafts = engines.run(engines.on, prompts, logprobs=5)
    without = engines.run(engines.off, prompts, logprobs=5)
    for a, b in zip(with_drafts, without, strict=True):
        if same_up_to_a_near_tie(a, b):
            assert tokens_of(a) == tokens_of(b) and a["done"]["finish_reason"] == b["done"]["finish_reason"]
    # drafts only for an answer written alone: beside another, a draft makes that one's every token wait for it
    assert all(len(decoding) == 1 for decoding, drafts in engines.drafting if drafts)
    if prompts == [REWRITE]:  # the rewrite copies its prompt: drafts were made and most were taken
        done = with_drafts[0]["done"]
        assert done["drafted"] > 20 and done["accepted"] > done["drafted"] / 2, done
        assert engines.on.drafted > drafted


def test_held_to_a_schema_and_ended_by_a_stop_word_the_answers_are_the_same(engines: Engines) -> None:
    schema = {"type": "object", "properties": {"code": {"type": "string", "maxLength": 600}}, "required": ["code"]}
    prompt = chat(f"Give this code back as JSON, in a field named code.\n\n{CODE}")
    held = [engines.run(engine, [prompt], json_schema=schema, max_tokens=200, logprobs=5)[0]
            for engine in (engines.on, engines.off)]
    same_up_to_a_near_tie(*held)
    assert held[0]["text"].startswith('{"code": ')
    assert held[0]["done"].get("drafted", 0) > 0  # (drafts cut where the grammar would refuse them)
    stopped = [engines.run(engine, [REWRITE], stop=["strip()"], logprobs=5)[0] for engine in (engines.on, engines.off)]
    if same_up_to_a_near_tie(*stopped):
        assert stopped[0]["done"].get("stop_word") == "strip()" and stopped[0]["done"]["finish_reason"] == "stop"
    assert "strip()" not in stopped[0]["text"]


def test_a_cancel_while_drafts_are_in_the_cache_leaves_it_as_a_fresh_one(engines: Engines) -> None:
    """The rewrite cancelled some steps into its answer (drafts taken and refused by then) while another
    answer goes on beside it: that one is unchanged, and the rewrite asked again answers as on a fresh cache."""
    fresh = engines.run(engines.off, [REWRITE, QUOTE], max_tokens=60, logprobs=5)
    for after in (20, 25, 30):
        beside = engines.run(engines.on, [REWRITE, QUOTE], cancel_after=after, max_tokens=60, logprobs=5)
        assert beside[0]["done"] is None
        same_up_to_a_near_tie(beside[1], fresh[1])
        again = engines.run(engines.on, [REWRITE], max_tokens=60, logprobs=5)[0]
        same_up_to_a_near_tie(again, fresh[0])


def test_log_probabilities_cover_exactly_the_tokens_written(engines: Engines) -> None:
    on, off = (engines.run(engine, [REWRITE], logprobs=5, max_tokens=80)[0] for engine in (engines.on, engines.off))
    assert on["done"]["drafted"] > 0
    assert len(on["logprobs"]) == tokens_of(on) and len(off["logprobs"]) == tokens_of(off)
    assert "".join(e["token"] for e in on["logprobs"]) == on["text"]
    same_up_to_a_near_tie(on, off)
    for a, b in zip(on["logprobs"], off["logprobs"], strict=False):  # (to the first difference: rounding, no more)
        if a["token"] != b["token"]:
            break
        assert abs(a["logprob"] - b["logprob"]) < NEAR_TIE and len(a["top_logprobs"]) == 5
