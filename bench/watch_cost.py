"""What watching an answer costs the model: the server's own generation rate for the same long answer,
streamed to a pipe, to `xitui chat` on a terminal (Markdown view) and to the dashboard's chat pane, in one run.

    python bench/watch_cost.py [--rounds 3] [--tokens 512] [--keys 8]

The bundled GGUF is launched with one slot; every request is the same (temperature 0, so the same answer), and
each figure is the server's `metrics.last_tokens_per_s` for it, so the client's own arithmetic never enters.
The terminal and the dashboard run in real terminals (tmux, 100x30 and 120x40), drawn as a person sees them.
Rounds interleave the ways of watching; each way's rate is divided by the piped rate of its round, and the
median of those ratios is the figure (the spread beside it). A second piped way shows how far two runs of the
same thing drift apart on this machine: the noise any other figure carries.
Targets (issue 25): terminal >= 0.97 x piped, dashboard >= 0.95 x piped, for a story and for a Markdown-heavy
answer (lists, code, tables); keys typed into the dashboard while an answer streams show within 100 ms.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time

import common  # puts the repository on sys.path

from tests.server.conftest import gguf_spec

PROMPTS = {
    "story": "Write a very long story about a dragon, with many chapters.",
    "markdown": "Write a long Markdown cheat sheet for Python: headings, bulleted and numbered lists, tables "
                "and many code blocks.",
}
SOCKET = f"xitui-watch-{os.getpid()}"
TARGETS = {"terminal": 0.97, "dashboard": 0.95}


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, *args], check=True, capture_output=True, text=True).stdout


def xitui_argv() -> list[str]:
    return [sys.executable, "-m", "xitui"]


class Served:
    """The model's figures on the server: requests done, tokens generated, the last request's rate."""

    def __init__(self, url: str, uid: str) -> None:
        from xitui.client import Client

        self.client, self.uid = Client(url), uid

    def read(self) -> tuple[int, int, float, int]:
        m = self.client.describe_model(self.uid)["metrics"]
        return m["requests"], m["tokens_generated"], m.get("last_tokens_per_s") or 0.0, m["in_flight"]

    def wait_done(self, before: tuple[int, int, float, int], timeout: float = 300) -> tuple[float, int]:
        """Wait (polling twice a second) until a request after the reading `before` has ended: (its rate,
        its tokens)."""
        deadline = time.monotonic() + timeout
        requests_before, tokens_before = before[0], before[1]
        while time.monotonic() < deadline:
            requests, tokens, rate, in_flight = self.read()
            if requests > requests_before and in_flight == 0:
                return rate, tokens - tokens_before
            time.sleep(0.5)
        raise TimeoutError("the answer did not end")


class CpuWatch:
    """The CPU a process spends while it runs, read every 0.1 s (a process that ends keeps its last reading)."""

    def __init__(self, pid: int) -> None:
        import threading

        import psutil

        self.proc = psutil.Process(pid)
        self.first = self.last = self._read() or 0.0
        self.start = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _read(self) -> float | None:
        try:
            times = self.proc.cpu_times()
        except Exception:  # noqa: BLE001 - it ended
            return None
        return times.user + times.system

    def _watch(self) -> None:
        while not self._stop.wait(0.1):
            now = self._read()
            if now is None:
                return
            self.last = now

    def share(self) -> float:
        """Per cent of one core since the start."""
        self._stop.set()
        self._thread.join()
        return 100 * (self.last - self.first) / max(1e-9, time.monotonic() - self.start)


def tmux_server() -> int:
    """The pid of the tmux server: the terminal that draws what the views write."""
    return int(tmux("display", "-p", "#{pid}").strip())


def pane_python(session: str) -> int:
    """The pid of the Python process a tmux pane runs (directly or under a shell)."""
    import psutil

    pane = psutil.Process(int(tmux("display", "-p", "-t", session, "#{pane_pid}").strip()))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for proc in [pane, *pane.children(recursive=True)]:
            if "python" in proc.name():
                return proc.pid
        time.sleep(0.01)
    raise TimeoutError("no Python process in the pane")


def piped(served: Served, url: str, prompt: str, tokens: int) -> tuple[float, int, float]:
    before = served.read()
    argv = xitui_argv() + ["chat", "-e", url, "-u", served.uid, "--max-tokens", str(tokens), "--temperature", "0",
                           "--no-save", prompt]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    cpu = CpuWatch(proc.pid)
    proc.communicate()
    return (*served.wait_done(before), cpu.share(), 0.0)


def terminal(served: Served, url: str, prompt: str, tokens: int) -> tuple[float, int, float]:
    before = served.read()
    argv = xitui_argv() + ["chat", "-e", url, "-u", served.uid, "--max-tokens", str(tokens), "--temperature", "0",
                           "--no-save", prompt]
    command = shlex.join(argv) + f"; tmux -L {SOCKET} wait-for -S chat-done; sleep 30"
    tmux("new-session", "-d", "-s", "chat", "-x", "100", "-y", "30", command)
    try:
        cpu, drawn = CpuWatch(pane_python("chat")), CpuWatch(tmux_server())
        tmux("wait-for", "chat-done")
        return (*served.wait_done(before), cpu.share(), drawn.share())
    finally:
        tmux("kill-session", "-t", "chat")


class Dashboard:
    """The dashboard in a tmux pane, its chat pane on the model."""

    def __init__(self, url: str) -> None:
        command = shlex.join(xitui_argv() + ["dashboard", "-e", url])
        tmux("new-session", "-d", "-s", "dash", "-x", "120", "-y", "40", command)
        self.pid = pane_python("dash")
        self.wait_for(lambda screen: "bench-gemma" in screen and "ready" in screen, 60)
        tmux("send-keys", "-t", "dash", "c")
        self.wait_for(lambda screen: "bench-gemma (LLM)" in screen, 10)

    def screen(self) -> str:
        return tmux("capture-pane", "-p", "-t", "dash")

    def wait_for(self, check, seconds: float, every: float = 0.1) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            if check(self.screen()):
                return time.perf_counter() - start
            time.sleep(every)
        raise TimeoutError(f"the dashboard did not show it: {self.screen()}")

    def ask(self, served: Served, prompt: str) -> tuple[float, int, float]:
        before = served.read()
        tmux("send-keys", "-t", "dash", "C-l")  # a new conversation: the same request every time
        time.sleep(0.3)
        tmux("send-keys", "-t", "dash", "-l", prompt)
        cpu, drawn = CpuWatch(self.pid), CpuWatch(tmux_server())
        tmux("send-keys", "-t", "dash", "Enter")
        result = served.wait_done(before)
        shares = cpu.share(), drawn.share()
        self.wait_for(lambda screen: "tokens/s" in screen or "stopped" in screen, 120, 0.5)  # caught up
        return (*result, *shares)

    def key_latencies(self, served: Served, prompt: str, count: int) -> list[float]:
        """Seconds from a key typed into the input to its showing, while an answer streams."""
        before = served.read()
        tmux("send-keys", "-t", "dash", "C-l")
        time.sleep(0.3)
        tmux("send-keys", "-t", "dash", "-l", prompt)
        tmux("send-keys", "-t", "dash", "Enter")
        time.sleep(2)  # well into the answer
        seen = []
        for i in range(count):
            if served.read()[3] == 0:
                break
            marker = "Q" * (i + 1)
            tmux("send-keys", "-t", "dash", "-l", "Q")
            seen.append(self.wait_for(lambda screen, m=marker: f"▊ {m} " in screen or f"▊ {m}" in screen, 5, 0.002))
            time.sleep(0.5)
        served.wait_done(before)
        tmux("send-keys", "-t", "dash", "C-u")  # clear the typed keys (TextArea: delete to line start)
        return seen

    def close(self) -> None:
        tmux("kill-session", "-t", "dash")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--answers", default="story,markdown", help="Which prompts: story, markdown.")
    parser.add_argument("--niceness", type=int, default=None,
                        help="The views' niceness (the config's; default: xitui's default, 10).")
    args = parser.parse_args()
    if shutil.which("tmux") is None:
        sys.exit("tmux is needed: apt install tmux")
    from tests.model_files import gguf_path
    from xitui.client import Client

    gguf = gguf_path()
    niceness = "" if args.niceness is None else f"niceness = {args.niceness}\n"
    server = common.Server(f'{niceness}[server]\nwarm = ["none"]\n[generation]\nmax_tokens = {args.tokens}\n'
                           'temperature = 0\n')
    os.environ["XITUI_ENDPOINT"] = server.url
    client = Client(server.url)
    dashboard = None
    try:
        client.register_model("LLM", gguf_spec("bench-gemma", gguf, context_length=4096))
        client.launch_model(model_name="bench-gemma", n_parallel=1)
        served = Served(server.url, "bench-gemma")
        dashboard = Dashboard(server.url)
        ways = {"piped": lambda p: piped(served, server.url, p, args.tokens),
                "terminal": lambda p: terminal(served, server.url, p, args.tokens),
                "dashboard": dashboard.ask,
                # the same as the first: how far two runs of one thing drift apart here (the noise floor)
                "piped again": lambda p: piped(served, server.url, p, args.tokens)}
        for answer in args.answers.split(","):
            prompt = PROMPTS[answer]
            rates: dict[str, list[float]] = {way: [] for way in ways}
            shares: dict[str, list[float]] = {way: [] for way in ways}
            terminals: dict[str, list[float]] = {way: [] for way in ways}
            lengths: dict[str, set[int]] = {way: set() for way in ways}
            piped(served, server.url, prompt, 16)  # the prompt's cells are warm for every way alike
            for _ in range(args.rounds):
                for way, run in ways.items():
                    rate, tokens, share, drawn = run(served, prompt) if way == "dashboard" else run(prompt)
                    rates[way].append(rate)
                    shares[way].append(share)
                    terminals[way].append(drawn)
                    lengths[way].add(tokens)
            print(f"\n{answer}: {PROMPTS[answer]!r}, tokens per answer {sorted(set().union(*lengths.values()))}")
            for way, values in rates.items():
                # each round's rate against the piped one of the same round: the machine's own drift (a few
                # per cent between runs here) cancels; the median of those ratios is the figure
                ratios = [v / p for v, p in zip(values, rates["piped"], strict=True)]
                ratio = statistics.median(ratios)
                target = TARGETS.get(way)
                verdict = "" if target is None else ("OK" if ratio >= target else f"UNDER the {target} target")
                print(f"  {way:<11} {statistics.median(values):5.1f} tok/s (runs: "
                      f"{', '.join(f'{v:.1f}' for v in values)})  {ratio:5.3f} x piped "
                      f"({min(ratios):.2f}-{max(ratios):.2f})  {verdict:<24}"
                      f"CPU (% of a core): client {statistics.median(shares[way]):4.1f}, "
                      f"terminal (tmux) {statistics.median(terminals[way]):4.1f}")
        if args.keys:
            latencies = dashboard.key_latencies(served, PROMPTS["story"], args.keys)
            worst = max(latencies)
            print(f"\nkeys typed while an answer streams: median {statistics.median(latencies) * 1000:.0f} ms, "
                  f"worst {worst * 1000:.0f} ms of {len(latencies)}  "
                  f"{'OK' if worst <= 0.1 else 'OVER the 100 ms target'}")
    finally:
        if dashboard is not None:
            dashboard.close()
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True)
        server.stop()


if __name__ == "__main__":
    main()
