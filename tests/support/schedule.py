"""The slow tier's order on its processes: the longest module first.

`scripts/test` runs the slow tier with `--dist loadfile` (a module to a process, so a module's server starts
once). xdist hands out modules by their count of tests, most first, so modules of a few long tests (a
conversion, the agents, `xitui check`) came last and one process ran on alone while the others sat idle.
Handed out longest first by the seconds each module took when last measured (`slow_seconds.json`), the
processes end within a module's length of each other (the longest-processing-time rule).

Measure again after a module grows or shrinks a lot (a module not in the table counts by its number of tests):

    .venv/bin/python -m pytest -m "slow and not alone" -n 2 --dist loadfile --junitxml=/tmp/slow.xml
    .venv/bin/python -m tests.support.schedule /tmp/slow.xml
"""

from __future__ import annotations

import json
import sys
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadFileScheduling

#: Seconds each slow module took (setup, calls and teardown), from the run's JUnit XML.
SECONDS = Path(__file__).with_name("slow_seconds.json")
#: What a test of a module not yet measured counts for (about the slow tier's mean).
UNMEASURED_TEST_SECONDS = 3.0


def measured() -> dict[str, float]:
    try:
        return json.loads(SECONDS.read_text())
    except (OSError, ValueError):
        return {}


class LongestFirst(LoadFileScheduling):
    """xdist's `loadfile`, each free process given the longest module left."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.seconds = measured()

    def _cost(self, module: str) -> float:
        known = self.seconds.get(module)
        return known if known is not None else UNMEASURED_TEST_SECONDS * len(self.workqueue[module])

    def _assign_work_unit(self, node: Any) -> None:
        self.workqueue.move_to_end(max(self.workqueue, key=self._cost), last=False)
        super()._assign_work_unit(node)


def from_junit(path: Path) -> dict[str, float]:
    """Seconds per test module in a JUnit XML report (its `time` is setup, call and teardown)."""
    seconds: dict[str, float] = defaultdict(float)
    for case in ET.parse(path).iter("testcase"):
        module = case.get("classname", "")
        parts = module.split(".")
        # a test in a class is "tests.server.test_x.Class": the module is the longest prefix that is a file
        while parts and not Path(*parts).with_suffix(".py").exists():
            parts.pop()
        if parts:
            seconds["/".join(parts) + ".py"] += float(case.get("time", 0))
    return {module: round(total, 1) for module, total in sorted(seconds.items())}


if __name__ == "__main__":
    table = from_junit(Path(sys.argv[1]))
    SECONDS.write_text(json.dumps(table, indent=1) + "\n")
    print(f"{len(table)} modules, {sum(table.values()):.0f} s in all -> {SECONDS}")
