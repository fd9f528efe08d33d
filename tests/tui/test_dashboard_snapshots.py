"""Snapshots of the dashboard from fixed data: the main screen and the launch modal, two themes, two sizes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.tui.fixed_data import fixed_snapshot
from xitui.tui.dashboard_app import make_app

SIZES = [(120, 40), (80, 24)]


def fixed_app(theme: str) -> Any:
    return make_app(None, "http://127.0.0.1:9997", theme, live=False)


async def show(pilot: Any) -> None:
    await pilot.pause()  # the dashboard screen's widgets are mounted
    pilot.app.dashboard.show_snapshot(fixed_snapshot())
    await pilot.pause()


@pytest.mark.parametrize("theme", ["dark", "light"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_main_screen(snap_compare: Any, theme: str, size: tuple[int, int]) -> None:
    assert snap_compare(fixed_app(theme), terminal_size=size, run_before=show)


@pytest.mark.parametrize("theme", ["dark", "high-contrast"])
@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_launch_modal(snap_compare: Any, theme: str, size: tuple[int, int]) -> None:
    assert snap_compare(fixed_app(theme), terminal_size=size, run_before=show, press=["l"])


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_resources_tab(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(fixed_app("dark"), terminal_size=size, run_before=show, press=["3"])
