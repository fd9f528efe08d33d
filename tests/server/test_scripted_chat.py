"""Chat and generate through a real server and its worker, answered by a scripted model (backends/scripted.py): what
a client gets back, whole and streamed, in OpenAI's shapes. No weights, so this is the quick tier's; the same
with real models is test_openai.py, test_tools.py and test_structured.py (slow)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support import servers
from tests.support.models import launched
from tests.support.specs import THINKING_CHATML, scripted_spec
from xitui.client import Client

RULES = [
    {"match": "add two and two", "reply": "<think>Two and two make four.</think>It is 4."},
    {"match": "stop early", "reply": "Kept.<|im_end|>Never shown."},
    {"match": "count", "reply": ["one", " two", " three", " four", " five"]},
    {"match": "show the prompt", "echo": "prompt"},
    {"reply": "Hello there, friend."},
]
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def chatty(scripted: servers.ServerProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    spec = scripted_spec("chatty", tmp_path_factory.mktemp("chatty"), RULES,
                         abilities=["generate", "chat", "reasoning"])
    with launched(Client(scripted.url), "chatty", spec, model_engine="scripted") as uid:
        yield uid


def sdk(server: servers.ServerProcess) -> Any:
    openai = pytest.importorskip("openai")
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


def chatml(messages: list[dict[str, str]]) -> str:
    """What the spec's template makes of a conversation (Jinja drops a template's last newline)."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant"


def test_an_answer_whole_and_streamed_token_by_token_with_its_usage(scripted, chatty):
    client = sdk(scripted)
    whole = client.chat.completions.create(model=chatty, messages=HI)
    choice = whole.choices[0]
    assert (choice.message.role, choice.message.content, choice.finish_reason) == (
        "assistant", "Hello there, friend.", "stop")
    # a prompt's tokens are its characters: usage counts the conversation as the template wrote it
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (
        len(chatml(HI)), 3, len(chatml(HI)) + 3)
    chunks = list(client.chat.completions.create(model=chatty, messages=HI, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert pieces == ["Hello", " there,", " friend."]  # a chunk per token, as they are written
    # OpenAI's way, asked for: the answer ends, then a last chunk of no choice carries the usage
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-2].usage is None
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 3
    assert chunks[-1].usage.prompt_tokens == len(chatml(HI)) and len({c.id for c in chunks}) == 1
    # not asked for: none; without stream_options, Xinference's way: the answer's last chunk carries it
    unasked = list(client.chat.completions.create(model=chatty, messages=HI, stream=True,
                                                  stream_options={"include_usage": False}))
    assert all(c.usage is None for c in unasked) and unasked[-1].choices[0].finish_reason == "stop"
    xinference = list(client.chat.completions.create(model=chatty, messages=HI, stream=True))
    assert xinference[-1].choices[0].finish_reason == "stop" and xinference[-1].usage.completion_tokens == 3
    bad = httpx.post(f"{scripted.url}/v1/chat/completions", json={
        "model": chatty, "messages": HI, "stream": True, "stream_options": {"include_usage": "yes"}})
    assert bad.status_code == 400 and "stream_options.include_usage" in bad.json()["detail"]


def test_the_worker_gets_the_conversation_as_the_chat_template_writes_it(scripted, chatty):
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "Hi."}, {"role": "user", "content": "show the prompt"}]
    done = sdk(scripted).chat.completions.create(model=chatty, messages=messages)
    assert json.loads(done.choices[0].message.content) == chatml(messages)
    # OpenAI's `developer` (its newer name for `system`: the Agents SDK and LangChain send it) is read as system
    developer = [{**messages[0], "role": "developer"}, *messages[1:]]
    done = sdk(scripted).chat.completions.create(model=chatty, messages=developer)
    assert json.loads(done.choices[0].message.content) == chatml(messages)


def test_max_tokens_ends_with_length_and_stop_words_cut_the_answer(scripted, chatty):
    client = sdk(scripted)
    count = [{"role": "user", "content": "count"}]
    cut = client.chat.completions.create(model=chatty, messages=count, max_tokens=2)
    assert (cut.choices[0].message.content, cut.choices[0].finish_reason, cut.usage.completion_tokens) == (
        "one two", "length", 2)
    stopped = client.chat.completions.create(model=chatty, messages=count, stop=["three"])
    assert (stopped.choices[0].message.content, stopped.choices[0].finish_reason) == ("one two ", "stop")
    # the spec's own stop word (the end of the assistant's turn) ends every answer
    spec_stop = client.chat.completions.create(model=chatty, messages=[{"role": "user", "content": "stop early"}])
    assert (spec_stop.choices[0].message.content, spec_stop.choices[0].finish_reason) == ("Kept.", "stop")


def test_a_thinking_models_reasoning_is_apart_from_its_answer_whole_and_streamed(scripted, chatty):
    client = sdk(scripted)
    question = [{"role": "user", "content": "add two and two"}]
    message = client.chat.completions.create(model=chatty, messages=question).choices[0].message
    assert (message.model_extra["reasoning_content"], message.content) == ("Two and two make four.", "It is 4.")
    streamed = {"reasoning_content": "", "content": ""}
    for chunk in client.chat.completions.create(model=chatty, messages=question, stream=True):
        delta = chunk.choices[0].delta
        streamed["content"] += delta.content or ""
        streamed["reasoning_content"] += (delta.model_extra or {}).get("reasoning_content") or ""
    assert streamed == {"reasoning_content": "Two and two make four.", "content": "It is 4."}
    plain = client.chat.completions.create(model=chatty, messages=HI).choices[0].message
    assert plain.model_extra.get("reasoning_content") is None and plain.content == "Hello there, friend."


def test_a_thought_the_template_opens_is_read_as_one(scripted, tmp_path):
    """The template opens the thought (the prompt ends with <think>): the model writes only its end; told not
    to (chat_template_kwargs), the model's own tags are split the same way."""
    rules = [{"match": "<think>", "reply": "Sunny, I think.</think>It is sunny."},
             {"reply": "<think>No thought opened.</think>Still split."}]
    spec = scripted_spec("thinker", tmp_path / "thinker", rules, abilities=["chat", "reasoning"],
                         chat_template=THINKING_CHATML)
    client = sdk(scripted)
    with launched(Client(scripted.url), "thinker", spec, model_engine="scripted") as uid:
        opened = client.chat.completions.create(model=uid, messages=HI).choices[0].message
        assert (opened.model_extra["reasoning_content"], opened.content) == ("Sunny, I think.", "It is sunny.")
        closed = client.chat.completions.create(model=uid, messages=HI, extra_body={
            "chat_template_kwargs": {"enable_thinking": False}}).choices[0].message
        assert (closed.model_extra["reasoning_content"], closed.content) == ("No thought opened.", "Still split.")


def test_generate_whole_and_streamed_through_the_python_client(scripted, chatty):
    model = Client(scripted.url).get_model(chatty)
    whole = model.generate("count to five")
    assert whole["choices"][0]["text"] == "one two three four five"
    assert whole["usage"] == {"prompt_tokens": len("count to five"), "completion_tokens": 5, "total_tokens": 18}
    pieces = [c["choices"][0]["text"] for c in model.generate("count to five", {"stream": True, "max_tokens": 3})]
    assert "".join(pieces) == "one two three" and pieces.count("") <= 1


def test_several_choices_each_answer_and_the_usage_counts_them_all(scripted, chatty):
    done = sdk(scripted).chat.completions.create(model=chatty, messages=HI, n=3)
    assert [c.index for c in done.choices] == [0, 1, 2]
    assert {c.message.content for c in done.choices} == {"Hello there, friend."}
    assert done.usage.completion_tokens == 9 and done.usage.prompt_tokens == len(chatml(HI))


def test_a_request_the_model_cannot_answer_is_one_line(scripted, chatty):
    too_long = httpx.post(f"{scripted.url}/v1/chat/completions", timeout=30, json={
        "model": chatty, "messages": [{"role": "user", "content": "x" * 5000}]})
    assert too_long.status_code == 400
    assert too_long.json()["detail"].endswith("this model's context holds 4096")


@pytest.mark.parametrize(("messages", "says"), [
    ([{"role": "robot", "content": "hi"}], "messages[0].role: 'robot' is not system (or developer), user, assistant or tool"),
    ([{"role": "user", "content": "hi"}, {"role": "", "content": "x"}], "messages[1].role: '' is not system"),
    ([{"role": "Developer", "content": "hi"}], "messages[0].role: 'Developer' is not system"),
    ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
     "messages[0].content[0]: 'image_url' parts are read by vision models"),
    ([{"role": "user"}], "messages[0].content: required"),
])
def test_a_message_the_server_cannot_read_is_one_line_and_reaches_no_worker(scripted, chatty, messages, says):
    """The server checks each message once (the worker takes what it is sent): a role or a part it does not
    read is the client's 400, and the model answers the next request as before."""
    bad = httpx.post(f"{scripted.url}/v1/chat/completions", timeout=30, json={"model": chatty, "messages": messages})
    assert bad.status_code == 400, bad.text
    assert bad.json()["detail"].startswith(says)
    pid = Client(scripted.url).describe_model(chatty)["pid"]
    good = httpx.post(f"{scripted.url}/v1/chat/completions", timeout=30, json={"model": chatty, "messages": HI})
    assert good.json()["choices"][0]["message"]["content"] == "Hello there, friend."
    assert Client(scripted.url).describe_model(chatty)["pid"] == pid


def test_log_probabilities_come_one_entry_a_token_in_both_apis(scripted, chatty):
    client = sdk(scripted)
    whole = client.chat.completions.create(model=chatty, messages=HI, logprobs=True, top_logprobs=1)
    entries = whole.choices[0].logprobs.content
    assert [e.token for e in entries] == ["Hello", " there,", " friend."]
    assert all(len(e.top_logprobs) == 1 and e.top_logprobs[0].token == e.token for e in entries)
    done = client.completions.create(model=chatty, prompt="count", max_tokens=3, logprobs=1)
    found = done.choices[0].logprobs
    assert found.tokens == ["one", " two", " three"] and found.text_offset == [0, 3, 7]


def test_an_error_answer_is_one_line_as_detail_and_as_openais_error(scripted, chatty):
    """`detail` for Xinference's clients and xitui's, OpenAI's `error` object beside it: the openai SDK's
    exceptions carry the same line and its type."""
    import openai

    bad = httpx.post(f"{scripted.url}/v1/chat/completions", timeout=30,
                     json={"model": chatty, "messages": [{"role": "robot", "content": "hi"}]})
    line = bad.json()["detail"]
    assert bad.status_code == 400 and bad.json() == {"type": "error", "detail": line, "error": {
        "message": line, "type": "invalid_request_error", "param": None, "code": None}}
    client = sdk(scripted)
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(model=chatty, messages=[{"role": "robot", "content": "hi"}])
    assert refused.value.body["message"] == line and refused.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError) as missing:
        client.chat.completions.create(model="nobody-here", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.type == "not_found_error" and "nobody-here" in missing.value.body["message"]
