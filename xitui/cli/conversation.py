"""The interactive loop of `xitui chat` and `xitui generate`: a prompt_toolkit line (history kept across
runs, Alt+Enter or a \"\"\" block for more lines, slash commands with completion), answers rendered as they
stream, every turn saved in the chat store (core/chats.py) unless told not to.

Ctrl-C while an answer streams closes the request (the server cancels the generation) and the session goes
on; Ctrl-C at the prompt clears the line; Ctrl-D ends.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xitui.cli.answer_view import AnswerView
from xitui.core.chats import ChatMessage, ChatSession, ChatStore, answered, to_json, to_markdown
from xitui.core.errors import XituiError
from xitui.core.files import private_file
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
/help               this list                               /exit or Ctrl-D  end
Enter sends · Alt+Enter (or Esc Enter) adds a line · a line of \"\"\" opens and closes a block · ↑ recalls
Ctrl-C stops an answer (the conversation goes on)"""

COMMANDS = ["/system", "/clear", "/set", "/save", "/export", "/help", "/exit"]


@dataclass
class Turn:
    """One exchange: what the user sent and what came back."""

    question: str
    answer: str
    stats: Any
    stopped: bool = False


@dataclass
class Conversation:
    handle: Any
    model_uid: str
    model_name: str | None
    kind: str  # "chat" or "generate"
    params: dict[str, Any]
    store: ChatStore | None
    system: str | None = None
    raw: bool = False
    session: ChatSession | None = None
    #: The conversation so far (chat), as requests send it, without the system prompt.
    history: list[dict[str, str]] = field(default_factory=list)
    session_id: int | None = None

    def __post_init__(self) -> None:
        if self.session is not None:
            self.session_id = self.session.id
            self.system = self.session.system if self.system is None else self.system
            self.history = answered(self.session.messages)

    # --- one turn ----------------------------------------------------------------------------------

    @property
    def rendered(self) -> bool:
        return not self.raw and sys.stdout.isatty()

    def messages_for(self, text: str) -> list[dict[str, str]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *self.history, {"role": "user", "content": text}]

    def _chunks(self, text: str) -> Iterator[dict[str, Any]]:
        config = {**self.params, "stream": True}
        if self.kind == "chat":
            return self.handle.chat(self.messages_for(text), generate_config=config)
        return self.handle.generate(text, config)

    def ask(self, text: str) -> Turn:
        """Send one message, show the answer as it comes, remember (and save) the exchange."""
        asked = on_interrupt()  # from here on, Ctrl-C stops this answer and never ends the program
        try:
            self.save_question(text)
            view = AnswerView(self.rendered)
            stream = self._chunks(text)
        except BaseException:
            asked.restore()
            raise
        stopped = False
        try:
            for chunk in stream:
                if asked():
                    stopped = True
                    break
                choice = (chunk.get("choices") or [{}])[0]
                piece = (choice.get("delta") or {}).get("content") if self.kind == "chat" else choice.get("text")
                if piece:
                    view.add(piece)
                usage = chunk.get("usage")
                if usage:
                    view.stats.tokens = usage.get("completion_tokens")
        except KeyboardInterrupt:
            stopped = True
        finally:
            asked.restore()
            if hasattr(stream, "close"):
                stream.close()  # a stopped answer: closing the request makes the server cancel it
            view.close("stopped" if stopped else None)
        if not self.rendered and sys.stdout.isatty():
            sys.stdout.write("\n")
        turn = Turn(text, view.text, view.stats, stopped)
        self.remember(turn)
        return turn

    def save_question(self, text: str) -> None:
        """Saved before the answer is asked for: a process killed mid-answer loses only the answer."""
        if self.store is None:
            return
        if self.session_id is None:
            self.session_id = self.store.new_session(self.kind, self.model_uid, self.model_name, self.system,
                                                     self.params, messages=(ChatMessage("user", text),))
        else:
            self.store.add(self.session_id, ChatMessage("user", text))

    def remember(self, turn: Turn) -> None:
        """The answer came (or was stopped): keep it in the conversation and in the store."""
        if self.kind == "chat" and turn.answer:
            self.history += [{"role": "user", "content": turn.question},
                             {"role": "assistant", "content": turn.answer}]
        if self.store is None or self.session_id is None or not turn.answer:
            return
        stats = turn.stats
        self.store.add(self.session_id, ChatMessage("assistant", turn.answer, ttft=stats.ttft,
                                                    tokens_per_s=stats.tokens_per_s, tokens=stats.count))

    # --- slash commands ------------------------------------------------------------------------------

    def command(self, line: str) -> bool:
        """Run a slash command; False when it ends the conversation."""
        name, _, rest = line.strip().partition(" ")
        rest = rest.strip()
        if name == "/exit":
            return False
        if name == "/help":
            output.info(HELP)
        elif name == "/system":
            if self.kind != "chat":
                output.info("/system: completions have no system prompt")
            else:
                self.system = rest or None
                if self.store is not None and self.session_id is not None:
                    self.store.update(self.session_id, system=rest)
                output.info(f"system prompt {'set' if rest else 'cleared'}")
        elif name == "/clear":
            self.history = []
            self.session_id = None
            output.info("new conversation" + (" (the last one is saved)" if self.store is not None else ""))
        elif name == "/set":
            self._set(rest)
        elif name == "/save":
            self._save()
        elif name == "/export":
            self._export(rest)
        else:
            output.info(f"unknown command {name}: /help lists them")
        return True

    def _set(self, rest: str) -> None:
        if not rest:
            shown = ", ".join(f"{k} {v}" for k, v in sorted(self.params.items())) or "server defaults"
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
        self.params[key] = [value] if key == "stop" else value
        if self.store is not None and self.session_id is not None:
            self.store.update(self.session_id, params=self.params)
        output.info(f"{key} = {value}")

    def _save(self) -> None:
        if self.store is not None:
            output.info(f"saved as session {self.session_id}" if self.session_id else
                        "saving: the conversation is saved from its first answer")
            return
        from xitui.cli.common import chat_store

        self.store = chat_store(force=True)
        pairs = tuple(ChatMessage(m["role"], m["content"]) for m in self.history)
        self.session_id = self.store.new_session(self.kind, self.model_uid, self.model_name, self.system,
                                                 self.params, messages=pairs)
        output.info(f"saved as session {self.session_id}; the rest of this conversation will be too")

    def _export(self, target: str) -> None:
        if not target:
            output.info("/export FILE: a .md or .json file")
            return
        session = self.snapshot()
        path = Path(target).expanduser()
        text = to_json(session) if path.suffix.lower() == ".json" else to_markdown(session)
        try:
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            output.info(f"/export: cannot write {path}: {exc.strerror}")
            return
        output.info(f"wrote {path}")

    def snapshot(self) -> ChatSession:
        """This conversation as a session (the saved one when there is one)."""
        if self.store is not None and self.session_id is not None:
            return self.store.get(self.session_id)
        import time

        now = time.time()
        return ChatSession(id=0, created=now, updated=now, kind=self.kind, model_uid=self.model_uid,
                           model_name=self.model_name, system=self.system, params=dict(self.params),
                           messages=[ChatMessage(m["role"], m["content"]) for m in self.history])

    # --- the loop ------------------------------------------------------------------------------------

    def loop(self, history_file: Path) -> None:
        read = LineReader(history_file, "you> " if self.kind == "chat" else "prompt> ")
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

