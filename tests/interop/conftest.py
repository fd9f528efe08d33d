"""A real Xinference cluster (`scripts/xinference-cluster start`), named by XITUI_XINFERENCE_URL.

Without one the interop tests are skipped with the reason, so `scripts/test` stays usable offline; CI
starts the cluster and runs them."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.server.conftest import gguf_path, server  # noqa: F401 - fixtures


@pytest.fixture(scope="session")
def cluster() -> str:
    url = os.environ.get("XITUI_XINFERENCE_URL")
    if not url:
        pytest.skip("no Xinference cluster: run `scripts/xinference-cluster start` and set XITUI_XINFERENCE_URL")
    try:
        nodes = httpx.get(f"{url}/v1/cluster/info", timeout=5).json()
    except (httpx.HTTPError, ValueError) as exc:
        pytest.skip(f"the Xinference cluster at {url} does not answer ({exc})")
    if not any(node.get("node_type") == "Worker" for node in nodes):
        pytest.skip(f"the Xinference cluster at {url} has no worker")
    return url
