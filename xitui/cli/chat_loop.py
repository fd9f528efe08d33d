"""The terminal face of `xitui chat` and `xitui generate`: a prompt_toolkit line (history kept across runs,
Alt+Enter or a \"\"\" block for more lines, slash commands with completion), answers rendered as they
stream. The conversation itself (history, requests, figures, saving) is client/conversation.py's.

Ctrl-C while an answer streams closes the request (the server cancels the generation) and the session goes
on; Ctrl-C at the prompt clears the line; Ctrl-D ends.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from xitui.cli.answer_view import AnswerView
from xitui.client.conversation import Answer, Conversation
from xitui.core.errors import XituiError
from xitui.core.files import private_file
from xitui.core.safe_text import StreamFilter, safe_line
from xitui.core.saved_chats import to_json, to_markdown
from xitui.terminal import output

#: `/set NAME VALUE`: the parameters a user may change, with their types.
PARAMETERS: dict[str, type] = {
    "temperature": float, "top_p": float, "top_k": int, "max_tokens": int, "seed": int,
    "repeat_penalty": float, "presence_penalty": float, "frequency_penalty": float, "stop": str,
}

HELP = """\
/system TEXT        set the system prompt (chat)            /clear          start a new conversation
/set NAME VALUE     temperature, top_p, top_k, max_tokens, seed, repeat_penalty, presence_penalty,
                    frequency_penalty, stop (/set alone lists them)
/save               save this conversation (and the rest of it) /export FILE  write it as .md or .json
/image PATH         an image for the next message (a vision model's; again for more)
/help               this list                               /exit or Ctrl-D  end
Enter sends · Alt+Enter (or Esc Enter) adds a line · a line of \"\"\" opens and closes a block · ↑ recalls
Ctrl-C stops an answer (the conversation goes on)"""

COMMANDS = ["/system", "/clear", "/set", "/save", "/export", "/image", "/help", "/exit"]


class ChatLoop:
    """`xitui chat` and `xitui generate` on a terminal: a conversation (client/conversation.py) shown as it
    streams, driven by lines and slash commands."""

    def __init__(self, conversation: Conversation, raw: bool = False, show_reasoning: bool = True):
        self.conversation = conversation
        self.raw = raw
        #: A thinking model's reasoning goes to stderr as it streams (dim on a terminal); stdout keeps the answer.
        self.show_reasoning = show_reasoning

    @property
    def rendered(self) -> bool:
        return not self.raw and sys.stdout.isatty()

    # --- one turn ----------------------------------------------------------------------------------

    def ask(self, text: str) -> Answer:
        """Send one message and show the answer as it comes; the conversation remembers (and saves) it."""
        asked = on_interrupt()  # from here on, Ctrl-C stops this answer and never ends the program
        view = None
        try:
            view = AnswerView(self.rendered)  # first: what it loads is not loaded while the model writes
            answer = self.conversation.ask(text)
            if self.show_reasoning:
                answer.on_reasoning = _thinking_out()
        except BaseException:
            asked.restore()
            if view is not None:
                view.close()
            raise
        try:
            for piece in answer:
                view.add(piece)
                if asked():
                    break
        except KeyboardInterrupt:
            pass
        finally:
            asked.restore()
            if asked.asked:
                answer.stop()  # closing the request makes the server cancel the generation
            answer.close()
            view.close(answer.stats.line(answer.note()))
        if answer.reasoning and self.show_reasoning and sys.stderr.isatty():
            sys.stderr.write("\x1b[0m\n")
        if not self.rendered and sys.stdout.isatty():
            sys.stdout.write("\n")
        show_calls(answer.tool_calls)
        self.conversation.remember(answer)
        return answer

    # --- slash commands ------------------------------------------------------------------------------

    def command(self, line: str) -> bool:
        """Run a slash command; False when it ends the conversation."""
        name, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        talk = self.conversation
        if name == "/exit":
            return False
        if name == "/help":
            output.info(HELP)
        elif name == "/system":
            if talk.kind != "chat":
                output.info("/system: completions have no system prompt")
            else:
                talk.set_system(rest)
                output.info(f"system prompt {'set' if rest else 'cleared'}")
        elif name == "/clear":
            self.conversation = talk.fresh()
            output.info("new conversation" + (" (the last one is saved)" if talk.store is not None else ""))
        elif name == "/set":
            self._set(rest)
        elif name == "/save":
            self._save()
        elif name == "/export":
            self._export(rest)
        elif name == "/image":
            self._attach(rest)
        else:
            output.info(f"unknown command {name}: /help lists them")
        return True

    def _attach(self, path: str) -> None:
        from xitui.core.errors import XituiError

        if self.conversation.kind != "chat":
            output.info("/image: completions read text only")
            return
        if not path:
            output.info("/image PATH: an image file for the next message")
            return
        try:
            name = self.conversation.attach(path)
        except XituiError as exc:
            output.info(str(exc))
            return
        count = len(self.conversation.attached)
        output.info(f"{name} goes with the next message" + (f" ({count} images)" if count > 1 else ""))

    def _set(self, rest: str) -> None:
        params = self.conversation.params
        if not rest:
            shown = ", ".join(f"{k} {v}" for k, v in sorted(params.items())) or "server defaults"
            output.info(f"parameters: {shown}; /set NAME VALUE changes one ({', '.join(PARAMETERS)})")
            return
        key, _, raw = rest.partition(" ")
        if key not in PARAMETERS:
            output.info(f"/set: unknown parameter {key!r} (known: {', '.join(PARAMETERS)})")
            return
        try:
            value: Any = PARAMETERS[key](raw.strip())
        except ValueError:
            output.info(f"/set {key}: {raw.strip()!r} is not a {PARAMETERS[key].__name__}")
            return
        self.conversation.set_param(key, [value] if key == "stop" else value)
        output.info(f"{key} = {value}")

    def _save(self) -> None:
        talk = self.conversation
        if talk.store is not None:
            output.info(f"saved as session {talk.session_id}" if talk.session_id else
                        "saving: the conversation is saved from its first answer")
            return
        from xitui.cli.common import chat_store

        store = chat_store(force=True)
        assert store is not None
        output.info(f"saved as session {talk.save_to(store)}; the rest of this conversation will be too")

    def _export(self, target: str) -> None:
        if not target:
            output.info("/export FILE: a .md or .json file")
            return
        session = self.conversation.snapshot()
        path = Path(target).expanduser()
        text = to_json(session) if path.suffix.lower() == ".json" else to_markdown(session)
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            output.info(f"/export: cannot write {path}: {exc.strerror}")
            return
        output.info(f"wrote {path}")

    # --- the loop ------------------------------------------------------------------------------------

    def loop(self, history_file: Path) -> None:
        read = LineReader(history_file, "you> " if self.conversation.kind == "chat" else "prompt> ")
        while True:
            text = read()
            if text is None:
                break
            if not text.strip():
                continue
            if text.startswith("/") and text.split()[0] in COMMANDS:
                if not self.command(text):
                    break
                continue
            try:
                self.ask(text)
            except XituiError as exc:
                output.error(str(exc))


def _thinking_out() -> Any:
    """Where reasoning goes: stderr, dim on a terminal, so a pipe on stdout gets the answer alone (made safe as
    it streams: core/safe_text.StreamFilter)."""
    dim = sys.stderr.isatty() and not os.environ.get("NO_COLOR")
    started = [False]
    shown = StreamFilter()

    def write(piece: str) -> None:
        if dim and not started[0]:
            sys.stderr.write("\x1b[2m")
        started[0] = True
        sys.stderr.write(shown.feed(piece))
        sys.stderr.flush()

    return write


def show_calls(calls: list[dict[str, Any]]) -> None:
    """The tool calls an answer makes, one line each: `name(arguments)` (what the model wrote, made safe)."""
    for call in calls:
        function = call.get("function") or {}
        sys.stdout.write(safe_line(f"{function.get('name')}({function.get('arguments') or ''})") + "\n")
    sys.stdout.flush()


class on_interrupt:  # noqa: N801 - used like a function: `asked = on_interrupt()`
    """While an answer streams, Ctrl-C asks it to stop at the next piece instead of raising in the middle of a
    terminal write (which could leave half a redraw on screen); a second Ctrl-C raises at once."""

    def __init__(self) -> None:
        import signal
        import threading

        self.asked = False
        self.previous: Any = None
        self.tty: Any = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        self._quiet_keys()

    def _quiet_keys(self) -> None:
        """Keys typed while the answer is drawn are not echoed (a `^C` would shift the redrawn lines)."""
        try:
            import termios

            fd = sys.stdin.fileno()
            if not sys.stdin.isatty():
                return
            self.tty = (fd, termios.tcgetattr(fd))
            quiet = termios.tcgetattr(fd)
            quiet[3] &= ~(termios.ECHO | termios.ECHOCTL)
            quiet[3] |= termios.ISIG  # Ctrl-C must be a signal here, whatever mode the line editor left
            termios.tcsetattr(fd, termios.TCSANOW, quiet)
        except (ImportError, OSError, ValueError, AttributeError):
            self.tty = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.asked:
            raise KeyboardInterrupt
        self.asked = True

    def __call__(self) -> bool:
        return self.asked

    def restore(self) -> None:
        if self.tty is not None:
            import termios

            termios.tcsetattr(self.tty[0], termios.TCSANOW, self.tty[1])
            self.tty = None
        if self.previous is not None:
            import signal

            signal.signal(signal.SIGINT, self.previous)
            self.previous = None


class LineReader:
    """One input (maybe several lines) per call; None at Ctrl-D. History lives in `history_file`."""

    def __init__(self, history_file: Path, label: str):
        from prompt_toolkit import PromptSession
        from prompt_toolkit.completion import WordCompleter
        from prompt_toolkit.history import FileHistory
        from prompt_toolkit.key_binding import KeyBindings

        private_file(history_file)
        keys = KeyBindings()
        # The line needs no cursor position report: a terminal that never answers one would keep the line
        # editor waiting (in raw mode, with Ctrl-C no signal) while the answer streams.
        os.environ.setdefault("PROMPT_TOOLKIT_NO_CPR", "1")

        @keys.add("escape", "enter")
        def _newline(event: Any) -> None:
            event.current_buffer.insert_text("\n")

        extra: dict[str, Any] = {}
        if not sys.stdout.isatty():  # the answer goes down a pipe: the line editor draws on stderr
            from prompt_toolkit.output import create_output

            extra["output"] = create_output(stdout=sys.stderr)
        self.session: Any = PromptSession(
            history=FileHistory(str(history_file)), key_bindings=keys,
            completer=WordCompleter(COMMANDS + [f"/set {p}" for p in PARAMETERS], sentence=True,
                                    pattern=None, match_middle=False),
            complete_while_typing=True, **extra)
        self.label = label

    def __call__(self) -> str | None:
        while True:
            try:
                text = self.session.prompt(self.label)
            except KeyboardInterrupt:
                continue  # Ctrl-C at the prompt: a fresh line
            except EOFError:
                return None
            if text.strip() == '"""':
                return self._block()
            return text

    def _block(self) -> str | None:
        lines: list[str] = []
        while True:
            try:
                line = self.session.prompt("... ")
            except KeyboardInterrupt:
                return ""
            except EOFError:
                return "\n".join(lines) or None
            if line.strip() == '"""':
                return "\n".join(lines)
            lines.append(line)


def history_path(home: Path, kind: str) -> Path:
    return home / "history" / f"{kind}.txt"

