"""Wall time of CLI commands a user runs often, against the DESIGN.md targets.

    python bench/cli_startup.py [--rounds 20]

Prints the median and best wall time of `xitui --help` (target <= 150 ms) next to a bare `python -c pass`
in the same run, so the ratio shows what xitui itself adds.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def wall(cmd: list[str], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        times.append((time.perf_counter() - start) * 1000)
    return times


def report(label: str, times: list[float], target: float | None, base: float | None = None) -> None:
    med = statistics.median(times)
    extra = f"  ({med / base:.2f} x bare python)" if base else ""
    verdict = "" if target is None else ("  OK" if med <= target else f"  OVER the {target:.0f} ms target")
    print(f"{label:<34} median {med:7.1f} ms   best {min(times):7.1f} ms{extra}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    script = Path(sys.executable).with_name("xitui")
    xitui = [str(script)] if script.exists() else [sys.executable, "-m", "xitui"]
    bare = wall([sys.executable, "-c", "pass"], args.rounds)
    base = statistics.median(bare)
    report("python -c pass", bare, None)
    report("xitui --help", wall([*xitui, "--help"], args.rounds), 150, base)
    report("xitui --version", wall([*xitui, "--version"], args.rounds), 150, base)


if __name__ == "__main__":
    main()
