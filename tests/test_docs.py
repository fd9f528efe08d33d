"""The manual stays true to the code: docs/cli.md is what scripts/cli-reference writes today, and every link
between README.md, CONTRIBUTING.md and docs/ leads to a file that exists."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def cli_reference() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cli_reference", ROOT / "scripts" / "cli_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_cli_reference_is_up_to_date() -> None:
    written = (ROOT / "docs" / "cli.md").read_text("utf-8")
    assert written == cli_reference().render(), "docs/cli.md is out of date: run scripts/cli-reference"


def test_every_command_and_setting_is_in_the_cli_reference() -> None:
    from xitui.core.config import SETTINGS

    written = (ROOT / "docs" / "cli.md").read_text("utf-8")
    for line in ("xitui launch", "xitui config set", "xitui chats search", "xitui cache remove"):
        assert f"\n## {line}\n" in written
    assert all(f"| `{key}` |" in written for key in SETTINGS)


def test_links_between_the_pages_lead_somewhere() -> None:
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text("utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (page.parent / target.split("#")[0]).exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken


def test_the_readme_links_every_page_of_the_manual() -> None:
    readme = (ROOT / "README.md").read_text("utf-8")
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if f"(docs/{p.name})" not in readme]
    assert not missing
