"""A cached prompt is reused only within its cache scope (GenerateParams.cache_key): with the real SmolLM2 GGUF
in the llama.cpp batch engine, a request of another scope starting with the same tokens decodes them again
(usage's cached_tokens 0), so it cannot confirm guesses of another client's prompt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import THREADS
from xitui.backends.base import GenerateParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    llama_cpp = pytest.importorskip("llama_cpp")
    from xitui.backends.llamacpp_batch import BatchEngine
    from xitui.core.specs import bundled
    path = bundled._package_dir(bundled.SMOLLM_PACKAGE) / bundled.SMOLLM_FILE
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_threads=THREADS, verbose=False)
    sent: dict[Any, list[dict[str, Any]]] = {}
    batch = BatchEngine(llm, slots=2, context=1024, threads=THREADS, send=lambda m: sent.setdefault(m["id"], []).append(m))
    batch.sent = sent
    yield batch
    llm.close()


def cached_tokens(engine: Any, rid: str, prompt: list[int], key: str | None) -> int:
    params = GenerateParams.from_request({"max_tokens": 3, "temperature": 0, "cache_key": key})
    engine.submit(rid, prompt, params, set())
    while engine.busy:
        engine.step()
    done = next(m for m in engine.sent[rid] if m["kind"] == "done")
    return done["usage"]["prompt_tokens_details"]["cached_tokens"]


def test_a_prompt_prefix_is_reused_only_within_its_scope(engine: Any) -> None:
    secret = engine.llm.tokenize(b"The launch code for the vault is 7 3 9 1 and the password is swordfish.")
    assert cached_tokens(engine, "alice-1", secret, "alice") == 0
    assert cached_tokens(engine, "alice-2", secret, "alice") > len(secret) // 2  # her own prefix: reused
    assert cached_tokens(engine, "mallory", secret, "mallory") == 0  # another scope: decoded again
    assert cached_tokens(engine, "mallory-2", secret, "mallory") > len(secret) // 2  # now his own
    assert cached_tokens(engine, "nobody", secret, None) == 0
