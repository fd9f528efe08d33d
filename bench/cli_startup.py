"""Wall time of CLI commands a user runs often, against the DESIGN.md targets.

    python bench/cli_startup.py [--rounds 20] [--endpoint http://127.0.0.1:9997]

Prints the median and best wall time of `xitui --help` and `--version` (target <= 150 ms) next to a bare
`python -c pass` in the same run, so the ratio shows what xitui itself adds. With --endpoint (a running
server), also `xitui registrations -e URL` (target <= 250 ms) twice: with nothing configured (no config
file, no setting's variable: the declared defaults, no pydantic) and with a one-line config file (checked
by the settings' pydantic models). The commands take turns round by round, so a busy machine slows them
alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def interleaved(commands: dict[str, tuple[list[str], dict[str, str] | None]], rounds: int) -> dict[str, list[float]]:
    """Wall times in ms of each command, one run of each per round."""
    times: dict[str, list[float]] = {label: [] for label in commands}
    for _ in range(rounds):
        for label, (cmd, env) in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
            times[label].append((time.perf_counter() - start) * 1000)
    return times


def report(label: str, times: list[float], target: float | None, base: float | None = None) -> None:
    med = statistics.median(times)
    extra = f"  ({med / base:.2f} x bare python)" if base else ""
    verdict = "" if target is None else ("  OK" if med <= target else f"  OVER the {target:.0f} ms target")
    print(f"{label:<34} median {med:7.1f} ms   best {min(times):7.1f} ms{extra}{verdict}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--endpoint", help="a running server: also time `xitui registrations -e URL`")
    args = parser.parse_args()
    script = Path(sys.executable).with_name("xitui")
    xitui = [str(script)] if script.exists() else [sys.executable, "-m", "xitui"]
    commands: dict[str, tuple[list[str], dict[str, str] | None]] = {
        "python -c pass": ([sys.executable, "-c", "pass"], None),
        "xitui --help": ([*xitui, "--help"], None),
        "xitui --version": ([*xitui, "--version"], None),
    }
    with tempfile.TemporaryDirectory() as tmp:
        if args.endpoint:
            # no variable of the settings (nor the tests' XITUI_WARM), a config file of our choosing
            bare = {k: v for k, v in os.environ.items() if not k.startswith("XITUI_") or k == "XITUI_HOME"}
            (Path(tmp) / "config.toml").write_text('theme = "dark"\n')
            registrations = [*xitui, "registrations", "-e", args.endpoint]
            commands["registrations, nothing configured"] = (
                registrations, {**bare, "XITUI_CONFIG": str(Path(tmp) / "none.toml")})
            commands["registrations, a config file"] = (
                registrations, {**bare, "XITUI_CONFIG": str(Path(tmp) / "config.toml")})
        times = interleaved(commands, args.rounds)
    base = statistics.median(times["python -c pass"])
    for label, took in times.items():
        target = None if label.startswith("python") else 250 if "registrations" in label else 150
        report(label, took, target, None if label.startswith("python") else base)


if __name__ == "__main__":
    main()
