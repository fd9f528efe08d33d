"""The official `openai` package against the server: models, completions, chat (stream and not), embeddings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server.conftest import ServerProcess, gguf_spec
from tests.server.test_embeddings import flat_spec
from xitui.client import Client


@pytest.fixture(scope="module")
def models(server: ServerProcess, gguf_path: Path) -> Iterator[tuple[str, str]]:
    client = Client(server.url)
    client.register_model("LLM", gguf_spec("oa-gemma", gguf_path))
    client.register_model("embedding", flat_spec("oa-minilm"))
    llm = client.launch_model(model_name="oa-gemma")
    emb = client.launch_model(model_name="oa-minilm", model_type="embedding")
    yield llm, emb
    for uid in (llm, emb):
        client.terminate_model(uid)


def test_openai_client(server: ServerProcess, models: tuple[str, str]) -> None:
    import openai

    llm, emb = models
    oa = openai.OpenAI(base_url=f"{server.url}/v1", api_key="not-needed")
    listed = {m.id: m for m in oa.models.list()}
    assert set(listed) >= {llm, emb} and listed[llm].owned_by == "xitui"

    prompt = "The capital of France is Paris. The capital of Germany is"
    done = oa.completions.create(model=llm, prompt=prompt, max_tokens=6, temperature=0)
    assert "Berlin" in done.choices[0].text and done.usage.completion_tokens <= 6
    streamed = "".join(c.choices[0].text for c in
                       oa.completions.create(model=llm, prompt=prompt, max_tokens=6, temperature=0, stream=True))
    assert streamed == done.choices[0].text

    messages = [{"role": "user", "content": "What is the capital of Germany?"}]
    chat = oa.chat.completions.create(model=llm, messages=messages, max_tokens=8, temperature=0)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].message.content
    chunks = list(oa.chat.completions.create(model=llm, messages=messages, max_tokens=8, temperature=0, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == chat.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")

    vectors = oa.embeddings.create(model=emb, input=["hello", "world"])
    assert len(vectors.data) == 2 and len(vectors.data[0].embedding) == 384
    assert vectors.usage.prompt_tokens > 0

    with pytest.raises(openai.NotFoundError):
        oa.completions.create(model="nobody-home", prompt="x", max_tokens=2)
    with pytest.raises(openai.BadRequestError):
        oa.embeddings.create(model=llm, input="x")
