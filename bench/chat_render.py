"""What drawing an answer as Markdown costs the terminal client, against writing the text raw.

    python bench/chat_render.py [--tokens 1000] [--rate 250] [--rounds 3]

Feeds a long Markdown answer (headings, lists, a table, code blocks) word by word through the CLI's
AnswerView, as `xitui chat` does with a stream arriving at --rate tokens/s: rendered into a 100-column
terminal console (output kept in memory), and raw (written to /dev/null). Prints the share of one core the
client spends drawing, and the time from the last piece to the finished screen.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SECTION = """## Step {n}

Some prose about step {n}, with **bold** words, `inline code` and a [link](https://example.com).
It runs on for a while so that the paragraph wraps over more than one line of the terminal.

- first point of step {n}
- second point, a little longer than the first one
  - a nested point

| name | value |
| --- | --- |
| alpha | {n} |
| beta | {m} |

```python
def step_{n}(x: int) -> int:
    return x * {n} + {m}
```

"""


def answer(tokens: int) -> list[str]:
    words: list[str] = []
    n = 0
    while len(words) < tokens:
        n += 1
        text = SECTION.format(n=n, m=n * 7)
        words += [w + " " if not w.endswith("\n") else w for w in text.replace("\n", "\n ").split(" ") if w]
    return words[:tokens]


def run(pieces: list[str], rendered: bool, rate: float) -> tuple[float, float, float]:
    """(CPU seconds, wall seconds, seconds from the last piece to the end of close())."""
    from rich.console import Console

    from xitui.cli.answer_view import AnswerView

    console = Console(file=io.StringIO(), force_terminal=True, width=100, height=40, color_system="truecolor")
    saved = sys.stdout
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the raw path writes here
    try:
        start, wall = time.process_time(), time.perf_counter()
        view = AnswerView(rendered, console=console if rendered else None)
        for i, piece in enumerate(pieces):
            view.add(piece)
            delay = wall + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # the next piece arrives
        last = time.perf_counter()
        view.close()
        end = time.perf_counter()
        return time.process_time() - start, end - wall, end - last
    finally:
        sys.stdout.close()
        sys.stdout = saved


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=250.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pieces = answer(args.tokens)
    results: dict[str, list[tuple[float, float, float]]] = {"raw text": [], "Markdown": []}
    for _ in range(args.rounds):
        results["raw text"].append(run(pieces, False, args.rate))
        results["Markdown"].append(run(pieces, True, args.rate))
    print(f"{args.tokens} tokens arriving at {args.rate:.0f} tokens/s, median of {args.rounds} rounds")
    for label, rows in results.items():
        cpu = statistics.median(r[0] for r in rows)
        wall = statistics.median(r[1] for r in rows)
        tail = statistics.median(r[2] for r in rows)
        print(f"  {label:<9} {cpu / wall * 100:5.1f} % of a core, {cpu * 1000 / args.tokens:.3f} ms CPU per token, "
              f"last piece to finished screen {tail * 1000:.1f} ms")


if __name__ == "__main__":
    main()
