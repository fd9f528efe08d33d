"""What users install: the built wheel, installed (not editable) into a fresh virtual environment, run from
outside the checkout. The rest of the suite runs from the editable checkout, where files missing from the
wheel (stylesheets, themes, catalog data) would go unnoticed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import model_files
from tests.conftest import ROOT
from tests.server.conftest import free_port
from tests.tmux import wait_for, wait_gone

pytestmark = pytest.mark.slow

#: Files besides code the installed program reads: missing, the dashboard or the catalog fails.
PACKAGE_DATA = ("xitui/tui/app.tcss", "xitui/themes/dark.tcss", "xitui/themes/light.tcss",
                "xitui/themes/high-contrast.tcss", "xitui/core/data/llm_families.json",
                "xitui/core/data/prompt_styles.json", "xitui/core/data/embedding_models.json")


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A fresh venv with the built wheel installed; its dependencies come from the test venv's site-packages
    (a path entry, so nothing is downloaded; that venv's editable xitui is not on the path)."""
    work = tmp_path_factory.mktemp("wheel")
    dist = work / "dist"
    # built from a clean copy: setuptools reuses a checkout's build/ folder, files a wheel no longer holds included
    source = work / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".xinference", "build", "*.egg-info", "__pycache__", ".pytest_cache", "tests"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist),
                    str(source)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("xitui-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [name for name in PACKAGE_DATA if name not in names]
    assert not missing, f"the wheel lacks {missing}"
    venv = work / "venv"
    # without pip of its own (ensurepip takes 4 s): the test venv's pip installs into it
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "test-venv-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--no-deps",
                    "--no-index", "-q", str(wheel)], check=True, capture_output=True, timeout=300)
    yield venv


def run(venv: Path, *args: str, cwd: Path, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / "xitui"), *args], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def test_the_installed_wheel_runs_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    gguf_path = model_files.gguf_path()
    home = tmp_path / "home"
    port = free_port()
    env = {**os.environ, "XITUI_HOME": str(home), "XITUI_CONFIG": str(home / "config.toml"),
           "XITUI_ENDPOINT": f"http://127.0.0.1:{port}", "PYTHONPATH": ""}
    # the program in use is the installed one, not the checkout
    where = subprocess.run([str(installed / "bin" / "python"), "-c", "import xitui; print(xitui.__file__)"],
                           capture_output=True, text=True, cwd=tmp_path, env=env, check=True).stdout
    assert str(installed) in where and str(ROOT) not in where

    version = run(installed, "--version", cwd=tmp_path, env=env)
    assert version.returncode == 0 and "0.1.0" in version.stdout

    try:
        listed = run(installed, "registrations", cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        assert "demo-gemma3-270m" in listed.stdout

        session = f"xitui-wheel-{port}"
        command = f"env XITUI_HOME={home} XITUI_CONFIG={home / 'config.toml'} XITUI_ENDPOINT={env['XITUI_ENDPOINT']} " \
                  f"{installed / 'bin' / 'xitui'} dashboard"
        if shutil.which("tmux"):
            subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "100", "-y", "30", "-c", str(tmp_path),
                            command], check=True)
            try:
                shown = wait_for(session, "no model is running", 40)
                assert "uid" in shown and "state" in shown
                subprocess.run(["tmux", "send-keys", "-t", session, "C-q"], check=True)
                assert wait_gone(session), "ctrl+q did not quit the dashboard"
            finally:
                subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    finally:
        run(installed, "stop", cwd=tmp_path, env=env)

    spec_file = tmp_path / "wizard.json"
    wizard = run(installed, "wizard", str(gguf_path), "--yes", "--output", str(spec_file), cwd=tmp_path, env=env)
    assert wizard.returncode == 0, wizard.stderr
    spec = json.loads(spec_file.read_text())
    assert spec["model_specs"][0]["model_format"] == "ggufv2"

    inspected = run(installed, "inspect", str(gguf_path), cwd=tmp_path, env=env)
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["model_specs"][0]["quantization"].lower() == "q4_k_m"
