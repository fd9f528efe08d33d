"""Machine resources: per GPU its memory as a bar, utilisation and which model holds how much; CPU and RAM
from psutil with short history sparklines. No GPU is one plain line saying so."""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Label, Sparkline, Static

from xitui.core.safe_text import safe_line
from xitui.tui.data import DASH, human_bytes

HISTORY = 60


def bar(used: float, total: float, width: int = 24) -> Text:
    """A memory bar: filled cells for the used share, the rest dim."""
    share = 0.0 if not total else max(0.0, min(1.0, used / total))
    filled = round(share * width)
    style = "red" if share > 0.9 else ("yellow" if share > 0.7 else "green")
    return Text("█" * filled, style=style) + Text("░" * (width - filled), style="dim")


class Resources(VerticalScroll):
    """GPUs, then CPU and RAM with their recent history."""

    DEFAULT_CSS = """
    Resources { height: 1fr; padding: 0 1; }
    Resources Sparkline { height: 2; margin-bottom: 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.cpu: deque[float] = deque(maxlen=HISTORY)
        self.ram: deque[float] = deque(maxlen=HISTORY)

    def compose(self) -> ComposeResult:
        yield Static(id="gpu-lines")
        yield Label("CPU", id="cpu-label")
        yield Sparkline(list(self.cpu), id="cpu-history")
        yield Label("RAM", id="ram-label")
        yield Sparkline(list(self.ram), id="ram-history")

    def show(self, resources: dict[str, Any] | None) -> None:
        if resources is None:
            self.query_one("#gpu-lines", Static).update("this server does not report machine resources")
            return
        lines = Text()
        gpus = resources.get("gpus") or []
        if not gpus:
            lines.append(f"no GPU: {safe_line(resources.get('gpu_note') or 'none found')}\n", style="dim")
        for gpu in gpus:
            used, total = gpu.get("memory_used") or 0, gpu.get("memory_total") or 0
            util = gpu.get("utilization")
            lines.append(safe_line(f"GPU {gpu.get('index')} {gpu.get('name')}") + "\n", style="bold")
            lines.append(bar(used, total))
            lines.append(f" {human_bytes(used)} / {human_bytes(total)}")
            lines.append(f"  util {util}%\n" if util is not None else "\n")
            for proc in gpu.get("processes") or []:
                who = safe_line(proc.get("model_uid") or f"pid {proc.get('pid')}")
                lines.append(f"  {who}: {human_bytes(proc.get('memory_used'))}\n",
                             style="" if proc.get("model_uid") else "dim")
        self.query_one("#gpu-lines", Static).update(lines)
        memory = resources.get("memory") or {}
        cpu = resources.get("cpu_percent")
        if isinstance(cpu, (int, float)):
            self.cpu.append(float(cpu))
        if memory.get("total"):
            self.ram.append(100.0 * memory.get("used", 0) / memory["total"])
        cores = resources.get("cpu_count")
        self.query_one("#cpu-label", Label).update(
            f"CPU {cpu if cpu is not None else DASH}% of {cores or DASH} cores")
        self.query_one("#ram-label", Label).update(
            f"RAM {human_bytes(memory.get('used'))} of {human_bytes(memory.get('total'))}")
        self.query_one("#cpu-history", Sparkline).data = list(self.cpu)
        self.query_one("#ram-history", Sparkline).data = list(self.ram)
