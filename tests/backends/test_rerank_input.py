"""A rerank worker reads each text as far as its model does, whatever it is sent: the real cross-encoder
(tests/model_files.reranker_dir) at its full 512 tokens, in this process."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psutil
import pytest

from tests.conftest import peak_rss
from tests.model_files import HELD_OUT, reranker_dir
from xitui.backends.sentence_transformers import SentenceTransformersBackend

pytestmark = [pytest.mark.slow, pytest.mark.alone]


@pytest.fixture(scope="module")
def backend() -> Iterator[SentenceTransformersBackend]:
    loaded = SentenceTransformersBackend()
    loaded.load({"model_path": str(reranker_dir()), "model_type": "rerank", "context_length": 512},
                lambda *_: None)
    yield loaded


def test_scores_are_the_models_own_truncation(backend: SentenceTransformersBackend) -> None:
    """Texts past 512 tokens are cut at the last token the model reads: the scores are CrossEncoder's on the
    whole texts (for a query the model reads whole, as queries are)."""
    question, passages = next(iter(HELD_OUT)), list(HELD_OUT.values())
    filler = " ".join(passages) + " "
    documents = [p + " " + filler * (i * 3) for i, p in enumerate(passages)]  # from short to 2,000 tokens
    whole = backend.model.predict([(question, d) for d in documents], convert_to_numpy=True)
    scores, tokens = backend.rerank(question, documents)
    assert scores == pytest.approx([float(s) for s in whole], abs=1e-5)
    assert tokens <= 512 * (len(documents) + 1)


def test_long_queries_and_documents_cost_bounded_memory(backend: SentenceTransformersBackend) -> None:
    """A 256 KiB query with eight 256 KiB documents: tokenized whole, each pair's overflow windows grew with the
    product of the two lengths (two 16 KiB texts: 350 MiB; this request: past the machine's memory)."""
    process = psutil.Process()
    kib = 256 * 1024
    words = "the fox lives in the forest and eats berries while a building of the city was built "
    query = (words * (kib // len(words) + 1))[:kib]
    documents = [(f"document {i} " + words * (kib // len(words) + 1))[:kib] for i in range(8)]
    backend.rerank("warm", ["up"])
    with peak_rss(process) as seen:
        started = time.monotonic()
        scores, tokens = backend.rerank(query, documents)
        took = time.monotonic() - started
    before, peak = seen[0], [seen[1]]
    growth = (peak[0] - before) / 2**20
    print(f"256 KiB x 8 at 512 tokens: {took:.2f} s, memory grew {growth:.0f} MiB at most")
    assert len(scores) == 8 and tokens == 512 * 9
    assert growth < 300, f"memory grew {growth:.0f} MiB"
