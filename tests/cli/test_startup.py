"""What a server command pays at start-up for reading the settings (DESIGN.md: `xitui registrations`
<= 250 ms against a running server)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from xitui.core.config import DEFAULT_ENDPOINT

#: What `registrations -e URL` does before its request: read the settings for the client, and import the
#: autostart module (which imports xitui.core.config) to check the listener.
CONNECT = ("import sys\nfrom xitui.cli.common import connect, settings\nimport xitui.client.autostart\n"
           "connect('http://127.0.0.1:1', None)\ns = settings()\n"
           "print(s.endpoint, s.api_key, 'pydantic' in sys.modules)")


def _connect(home: Path, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("XITUI_")}
    clean |= {"XITUI_HOME": str(home), "XITUI_CONFIG": str(home / "config.toml"), **env}
    return subprocess.run([sys.executable, "-c", CONNECT], env=clean, capture_output=True, text=True,
                          check=True).stdout.strip()


def test_with_nothing_configured_a_server_command_imports_no_pydantic(tmp_path: Path) -> None:
    """pydantic's import and the settings' models cost ~100 ms: a command that finds no config file and no
    setting's variable takes the declared defaults without them."""
    assert _connect(tmp_path) == f"{DEFAULT_ENDPOINT} None False"
    assert _connect(tmp_path, XITUI_CACHE=str(tmp_path), XITUI_API_KEY="") == f"{DEFAULT_ENDPOINT} None False"


@pytest.mark.parametrize("how", ["variable", "file"])
def test_anything_configured_is_checked(tmp_path: Path, how: str) -> None:
    if how == "file":
        (tmp_path / "config.toml").write_text('api_key = "secret"\n')
        assert _connect(tmp_path) == f"{DEFAULT_ENDPOINT} secret True"
        (tmp_path / "config.toml").write_text("api_key = 5\n")
        env, problem = {}, "config.toml: api_key: 5 is not a valid str"
    else:
        assert _connect(tmp_path, XITUI_API_KEY="secret") == f"{DEFAULT_ENDPOINT} secret True"
        env, problem = {"XITUI_ENDPOINT": "localhost:9997"}, "XITUI_ENDPOINT: endpoint: must start with http"
    with pytest.raises(subprocess.CalledProcessError) as failed:
        _connect(tmp_path, **env)
    assert problem in failed.value.stderr
