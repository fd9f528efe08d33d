"""The wizard's speed: time to its first question, and `xitui inspect` of the bundled 253 MB GGUF.

    python bench/wizard.py [--rounds 10]

Each figure is printed beside the direct library in the same run: the first question of `xitui wizard
FILE` (in a real pseudo-terminal, until the question is on screen) beside a bare questionary question in
the same terminal; `xitui inspect FILE` beside the `gguf` package's GGUFReader on the same file.
Targets (DESIGN.md): first question <= 0.5 s, inspect <= 0.2 s without reading the weights.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import common  # puts the repository on sys.path

from tests.model_files import gguf_path


def first_question(argv: list[str], marker: str, rounds: int) -> list[float]:
    """Seconds from spawning `argv` in a pseudo-terminal to `marker` on its screen."""
    import pexpect

    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        child = pexpect.spawn(argv[0], argv[1:], encoding="utf-8", timeout=30, dimensions=(40, 120),
                              env={**os.environ, "TERM": "xterm"})
        child.expect(marker)
        times.append(time.perf_counter() - start)
        child.sendcontrol("c")
        child.expect(pexpect.EOF)
        child.close()
    return times


def wall(argv: list[str], rounds: int) -> list[float]:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return times


def line(label: str, times: list[float], target: float | None = None, base: float | None = None) -> float:
    med = sorted(times)[len(times) // 2]
    extra = f"   {med / base:6.2f} x the direct library" if base else ""
    verdict = "" if target is None else ("   OK" if med <= target else f"   OVER the {target:.1f} s target")
    print(f"{label:<44} median {med * 1000:7.0f} ms   best {min(times) * 1000:7.0f} ms{extra}{verdict}")
    return med


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    gguf = str(gguf_path())
    script = os.path.join(os.path.dirname(sys.executable), "xitui")
    home = tempfile.mkdtemp(prefix="xitui-bench-wizard-")
    os.environ.update(XITUI_HOME=home, XITUI_CONFIG=os.path.join(home, "config.toml"))
    # no server answers at first: the wizard starts one in the background while its first question shows
    os.environ["XITUI_ENDPOINT"] = f"http://127.0.0.1:{common.free_port()}"

    bare = [sys.executable, "-c", "import questionary; questionary.select('Model type', ['LLM', 'embedding']).ask()"]
    base = line("bare questionary question", first_question(bare, "Model type", args.rounds))
    try:
        line("xitui wizard FILE: first question", first_question([script, "wizard", gguf], "Model type", args.rounds),
             0.5, base)
    finally:
        subprocess.run([script, "stop"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)

    direct = [sys.executable, "-c", f"import gguf; gguf.GGUFReader({gguf!r})"]
    base = line("gguf.GGUFReader (the gguf package)", wall(direct, max(2, args.rounds // 5)))
    line("xitui inspect FILE", wall([script, "inspect", gguf], args.rounds), 0.2, base)
    line("python -c pass", wall([sys.executable, "-c", "pass"], args.rounds))


if __name__ == "__main__":
    main()
