"""Views of a streaming answer draw at a paced rate: a costly frame makes the next one wait, the text that came
meanwhile is drawn with it, and nothing of the answer is lost."""

from __future__ import annotations

import io
import re
import time

from rich.console import Console

from xitui.cli.answer_view import AnswerView
from xitui.terminal.pacing import FramePacer


def burn(seconds: float) -> None:
    """Spend `seconds` of this thread's CPU."""
    start = time.thread_time()
    while time.thread_time() - start < seconds:
        pass


def test_the_wait_after_a_frame_follows_its_cost() -> None:
    pacer = FramePacer(share=0.05, shortest=0.05, longest=0.5)
    assert pacer.drawn() == 0.05  # a cheap frame: the next one after the shortest wait
    time.sleep(0.06)
    assert pacer.due()
    burn(0.01)
    assert 0.2 <= pacer.drawn() <= 0.5  # 10 ms of drawing at a 5 % share: about 0.2 s before the next
    burn(0.1)
    assert pacer.drawn() == 0.5  # never longer than `longest`: the text is never further behind


def test_a_terminal_answer_is_drawn_in_fewer_frames_than_pieces_and_whole() -> None:
    screen = io.StringIO()
    console = Console(file=screen, width=80, force_terminal=True, color_system=None)
    view = AnswerView(rendered=True, console=console)
    frames = 0
    original = view._frame

    def counted() -> None:
        nonlocal frames
        frames += 1
        original()

    view._frame = counted  # type: ignore[method-assign]
    words = [f"word{i} " for i in range(400)] + ["\n\n", "- last item\n"]
    start = time.monotonic()
    for word in words:
        view.add(word)
        time.sleep(0.001)  # pieces at up to 1000 a second, as a fast model streams them
    elapsed = time.monotonic() - start
    view.close("figures")
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen.getvalue())
    assert 1 <= frames <= elapsed * 20 + 1 < len(words)  # at most 20 frames a second, whatever the pieces
    assert "word0 " in shown and "word399" in shown and "• last item" in shown and shown.rstrip().endswith("figures")


def test_a_view_yields_once_and_says_so_to_its_children() -> None:
    """Every thread goes 4 nice steps down, once however often it is asked (a view started from a view does
    not go further down), and the environment says so, for a server a child might start."""
    import os
    import subprocess
    import sys

    code = ("import os, threading, time\n"
            "from xitui.terminal.pacing import yield_to_models\n"
            "t = threading.Thread(target=time.sleep, args=(1,)); t.start()\n"
            "base = os.getpriority(os.PRIO_PROCESS, 0)\n"
            "yield_to_models(4); yield_to_models(4)\n"
            "niced = {os.getpriority(os.PRIO_PROCESS, int(tid)) for tid in os.listdir('/proc/self/task')}\n"
            "print(niced == {min(19, base + 4)}, os.environ['XITUI_VIEW_YIELDED'])\n")
    env = {k: v for k, v in os.environ.items() if k != "XITUI_VIEW_YIELDED"}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.split() == ["True", "4"], done.stderr
