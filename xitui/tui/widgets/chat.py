"""The live chat pane: pick a running model and talk to it; conversations are saved (core/chats.py) and the
model's earlier ones can be resumed from the session picker.

Chat models get a conversation with an editable system prompt; answers stream in as Markdown with time to
first token and tokens/s under each; Esc stops a generation (the request is closed, so the server cancels
it). Generate-only models get completion mode. Embedding models get the cosine similarity of two texts.
The stream is read in a worker thread that posts each piece as a message; widgets change only in handlers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Input, Label, Markdown, Select, Static
from textual.worker import get_current_worker

from xitui.core.chats import answered
from xitui.tui.widgets.prompt_input import PromptInput

HELP = ("Pick a running model (or press c on its row) and write below. Enter sends · Alt+Enter or Ctrl+N adds a "
        "line · ↑/↓ recall earlier inputs · Esc stops an answer · Ctrl+O copies the last answer · Ctrl+L starts a "
        "new conversation. Conversations are saved: the second picker resumes one (`xitui chats` lists them). "
        "Generate-only models continue your text; embedding models compare two texts.")


@dataclass
class StreamStats:
    tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    first: float | None = None
    last: float | None = None

    def text(self) -> str:
        if self.first is None:
            return "no answer"
        ttft = (self.first - self.started) * 1000
        span = (self.last or self.first) - self.first
        rate = (self.tokens - 1) / span if self.tokens > 1 and span > 0 else 0.0
        return f"first token {ttft:.0f} ms · {rate:.1f} tokens/s · {self.tokens} tokens"

    @property
    def rate(self) -> float:
        span = (self.last or 0) - (self.first or 0)
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else 0.0


class ChatPane(Vertical):
    """Model picker, system prompt, the conversation, and the input line."""

    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane #chat-top { height: 1; margin-bottom: 1; }
    ChatPane #chat-model { width: 28; }
    ChatPane #chat-session { width: 30; }
    ChatPane #chat-system { width: 1fr; }
    ChatPane #chat-log { height: 1fr; }
    ChatPane .user { margin: 1 0 0 0; color: $text-accent; }
    ChatPane #chat-help { color: $text-muted; }
    ChatPane .answer { margin: 0; padding: 0; }
    ChatPane .stats { color: $text-muted; margin-bottom: 1; }
    ChatPane #embedding-box { height: auto; display: none; }
    ChatPane.-embedding #embedding-box { display: block; }
    ChatPane.-embedding #chat-log, ChatPane.-embedding PromptInput, ChatPane.-embedding #chat-system { display: none; }
    ChatPane.-completion #chat-system { display: none; }
    """

    class Answered(Message):
        """A generation ended (finished, stopped or failed)."""

        def __init__(self, stats: StreamStats, text: str, error: str | None) -> None:
            super().__init__()
            self.stats, self.text, self.error = stats, text, error

    class Piece(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.models: dict[str, dict[str, Any]] = {}
        self.uid: str | None = None
        self.messages: list[dict[str, str]] = []
        self.last_answer = ""
        self.generating = False
        self._stream: Any = None
        self._answer: Markdown | None = None
        self._stats_label: Label | None = None
        self._pieces: list[str] = []
        self._options: list[tuple[str, str]] = []
        self._stopped = False
        self.last_stats: StreamStats | None = None
        #: The saved session this conversation goes to (None: a new one is made at the first answer).
        self.session_id: int | None = None
        self._saver: Any = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="chat-top"):
            yield Select([], prompt="pick a running model", id="chat-model", allow_blank=True, compact=True)
            yield Select([], prompt="new conversation", id="chat-session", allow_blank=True, compact=True)
            yield Input(placeholder="system prompt (chat models)", id="chat-system", compact=True)
        with VerticalScroll(id="chat-log"):
            yield Static(HELP, id="chat-help")
        with Vertical(id="embedding-box"):
            yield Input(placeholder="first text", id="embed-a")
            yield Input(placeholder="second text", id="embed-b")
            with Horizontal():
                yield Button("cosine similarity", id="embed-go")
                yield Label("", id="embed-result")
        yield PromptInput(id="chat-input")

    # --- which model ---------------------------------------------------------------------------------

    def show_models(self, models: dict[str, dict[str, Any]]) -> None:
        """Offer the ready models; keep the chosen one while it runs."""
        ready = {uid: m for uid, m in models.items() if (m.get("state") or "ready") == "ready"}
        self.models = ready
        select = self.query_one("#chat-model", Select)
        options = [(f"{uid} ({m.get('model_type', 'LLM')})", uid) for uid, m in ready.items()]
        if [v for _, v in options] != [v for _, v in self._options]:
            self._options = options
            current = self.uid if self.uid in ready else Select.NULL
            with self.prevent(Select.Changed):
                select.set_options(options)
                select.value = current
            if self.uid is not None and self.uid not in ready:
                self.uid = None

    @on(Select.Changed, "#chat-model")
    def _model_chosen(self, event: Select.Changed) -> None:
        self.choose(None if event.value is Select.NULL else str(event.value))

    def choose(self, uid: str | None) -> None:
        self.uid = uid
        model = self.models.get(uid or "", {})
        kind = self.mode
        self.set_class(kind == "embedding", "-embedding")
        self.set_class(kind == "completion", "-completion")
        if uid is not None:
            select = self.query_one("#chat-model", Select)
            if select.value != uid:
                with self.prevent(Select.Changed):
                    select.value = uid
            what = {"chat": "chat", "completion": "completion (a generate-only model: your text is continued)",
                    "embedding": f"embedding, {model.get('dimensions', '?')} dimensions"}[kind]
            self.app.notify(f"{uid}: {what}", timeout=2)
        self.session_id = None
        self._list_sessions(uid)

    # --- saved conversations -------------------------------------------------------------------------

    @property
    def store(self) -> Any:
        return getattr(self.app, "chat_store", None)

    @work(thread=True, exclusive=True, group="sessions")
    def _list_sessions(self, uid: str | None) -> None:
        found = []
        if uid is not None and self.store is not None and self.mode != "embedding":
            try:
                found = self.store.sessions(model_uid=uid, limit=30)
            except Exception as exc:  # noqa: BLE001 - a broken store is shown, never a crash
                self.app.call_from_thread(self.app.notify, f"saved conversations: {exc}", severity="warning")
        options = [(f"#{s.id} {s.title or '(empty)'} ({s.count})", s.id) for s in found]
        self.app.call_from_thread(self._show_sessions, options)

    def _show_sessions(self, options: list[tuple[str, int]]) -> None:
        select = self.query_one("#chat-session", Select)
        with self.prevent(Select.Changed):
            select.set_options(options)
            select.value = self.session_id if self.session_id in [v for _, v in options] else Select.NULL

    @on(Select.Changed, "#chat-session")
    async def _session_chosen(self, event: Select.Changed) -> None:
        if event.value is Select.NULL:
            if self.session_id is not None:
                await self.clear()
            return
        if self.store is None or int(event.value) == self.session_id:  # type: ignore[arg-type]
            return
        session = self.store.get(int(event.value))  # type: ignore[arg-type]
        await self.clear()
        self.session_id = session.id
        log = self.query_one("#chat-log", VerticalScroll)
        for hint in log.query("#chat-help"):
            await hint.remove()
        for message in session.messages:
            if message.role == "user":
                await log.mount(Static(message.content, classes="user", markup=False))
            else:
                await log.mount(Markdown(message.content, classes="answer"))
        if session.kind == "chat":
            self.messages = answered(session.messages)
            self.query_one("#chat-system", Input).value = session.system or ""
        self.last_answer = next((m.content for m in reversed(session.messages) if m.role == "assistant"), "")
        log.scroll_end(animate=False)
        self.app.notify(f"resumed conversation #{session.id} ({len(session.messages)} messages)", timeout=2)

    def _save_question(self, uid: str, question: str, kind: str, system: str) -> None:
        """Saved before the answer is asked for (a dashboard killed mid-answer loses only the answer); the
        saves of one pane run one after another on their own thread, in the order they were asked for."""
        from xitui.core.chats import ChatMessage

        def save() -> None:
            message = ChatMessage("user", question)
            if self.session_id is None:
                name = str(self.models.get(uid, {}).get("model_name") or uid)
                self.session_id = self.store.new_session(kind, uid, name, system or None, dict(self.app.generation),
                                                         messages=(message,))
            else:
                self.store.add(self.session_id, message)

        self._saving(save, uid)

    def _save_answer(self, uid: str, answer: str, stats: StreamStats) -> None:
        from xitui.core.chats import ChatMessage

        def save() -> None:
            if self.session_id is None:
                return
            ttft = (stats.first - stats.started) if stats.first is not None else None
            self.store.add(self.session_id, ChatMessage("assistant", answer, ttft=ttft,
                                                        tokens_per_s=stats.rate or None, tokens=stats.tokens))

        self._saving(save, uid)

    def _saving(self, save: Any, uid: str) -> None:
        def run() -> None:
            try:
                save()
            except Exception as exc:  # noqa: BLE001 - shown, never a crash
                self.app.call_from_thread(self.app.notify, f"could not save the conversation: {exc}",
                                          severity="warning")
                return
            self.app.call_from_thread(self._list_sessions, uid)

        if self._saver is None:
            from concurrent.futures import ThreadPoolExecutor

            self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-save")
        self._saver.submit(run)

    @property
    def mode(self) -> str:
        model = self.models.get(self.uid or "", {})
        if model.get("model_type") == "embedding":
            return "embedding"
        return "chat" if "chat" in (model.get("model_ability") or []) else "completion"

    # --- talking -----------------------------------------------------------------------------------

    @on(PromptInput.Submitted)
    async def _submitted(self, event: PromptInput.Submitted) -> None:
        if self.uid is None:
            self.app.notify("pick a running model first", severity="warning")
            return
        if self.generating:
            self.app.notify("still answering: Esc stops it", severity="warning")
            return
        await self.send(event.text)

    async def send(self, text: str) -> None:
        log = self.query_one("#chat-log", VerticalScroll)
        for hint in log.query("#chat-help"):
            await hint.remove()
        await log.mount(Static(text, classes="user", markup=False))
        self._answer = Markdown("", classes="answer")
        self._stats_label = Label("…", classes="stats")
        await log.mount(self._answer, self._stats_label)
        log.scroll_end(animate=False)
        self._pieces = []
        self._md_stream = Markdown.get_stream(self._answer)
        self.generating = True
        if self.store is not None and self.uid is not None:
            self._save_question(self.uid, text, "chat" if self.mode == "chat" else "generate",
                                self.query_one("#chat-system", Input).value.strip())
        if self.mode == "chat":
            system = self.query_one("#chat-system", Input).value.strip()
            history = ([{"role": "system", "content": system}] if system else []) + self.messages
            self.messages.append({"role": "user", "content": text})
            self._generate(self.uid, [*history, {"role": "user", "content": text}], None)
        else:
            self._generate(self.uid, None, text)

    @work(thread=True, exclusive=True, group="chat")
    def _generate(self, uid: str | None, messages: list[dict[str, str]] | None, prompt: str | None) -> None:
        worker = get_current_worker()
        stats = StreamStats()
        pieces: list[str] = []
        error = None
        stream = None
        try:
            handle = self.app.client.get_model(uid)
            config = {"stream": True, **self.app.generation}
            stream = handle.chat(messages, generate_config=config) if messages is not None else \
                handle.generate(prompt, generate_config=config)
            for chunk in stream:
                if worker.is_cancelled:
                    break
                choice = (chunk.get("choices") or [{}])[0]
                piece = (choice.get("delta") or {}).get("content") if messages is not None else choice.get("text")
                if piece:
                    now = time.monotonic()
                    stats.first = stats.first or now
                    stats.last = now
                    stats.tokens += 1
                    pieces.append(piece)
                    self.post_message(self.Piece(piece))
        except Exception as exc:  # noqa: BLE001 - shown under the answer, never a crash
            error = " ".join(str(exc).split())
        finally:
            if stream is not None and hasattr(stream, "close"):
                stream.close()  # a stopped answer: closing the request makes the server cancel it
        self.post_message(self.Answered(stats, "".join(pieces), error))

    @on(Piece)
    async def _piece(self, event: Piece) -> None:
        event.stop()
        self._pieces.append(event.text)
        log = self.query_one("#chat-log", VerticalScroll)
        following = log.max_scroll_y - log.scroll_y <= 2
        await self._md_stream.write(event.text)
        if following:
            log.scroll_end(animate=False)

    @on(Answered)
    async def _answered(self, event: Answered) -> None:
        event.stop()
        await self._md_stream.stop()
        self.generating = False
        self.last_stats = event.stats
        self.last_answer = event.text
        if self.mode == "chat" and event.text:
            self.messages.append({"role": "assistant", "content": event.text})
        if event.text and self.store is not None and self.uid is not None:
            self._save_answer(self.uid, event.text, event.stats)
        label = event.stats.text()
        if event.error:
            label = f"error: {event.error}"
        elif not event.text and event.stats.first is None:
            label = "stopped" if self._stopped else "no answer"
        elif self._stopped:
            label += " · stopped"
        self._stopped = False
        if self._stats_label is not None:
            self._stats_label.update(label)
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    def stop(self) -> bool:
        """Esc: stop the answer being written; True when there was one."""
        if not self.generating:
            return False
        self._stopped = True
        self.workers.cancel_group(self, "chat")
        return True

    async def clear(self) -> None:
        """Ctrl+L: a new conversation (the last one stays saved)."""
        self.stop()
        self.messages = []
        self.last_answer = ""
        self.session_id = None
        await self.query_one("#chat-log", VerticalScroll).remove_children()
        select = self.query_one("#chat-session", Select)
        if select.value is not Select.NULL:
            with self.prevent(Select.Changed):
                select.value = Select.NULL

    # --- embeddings ----------------------------------------------------------------------------------

    @on(Button.Pressed, "#embed-go")
    @on(Input.Submitted, "#embed-b")
    def _similarity(self) -> None:
        first = self.query_one("#embed-a", Input).value
        second = self.query_one("#embed-b", Input).value
        if self.uid is None or not first or not second:
            self.app.notify("pick an embedding model and write two texts", severity="warning")
            return
        self.query_one("#embed-result", Label).update("…")
        self._embed(self.uid, first, second)

    @work(thread=True, exclusive=True, group="embed")
    def _embed(self, uid: str, first: str, second: str) -> None:
        import math

        try:
            data = self.app.client.get_model(uid).create_embedding([first, second])["data"]
            a, b = data[0]["embedding"], data[1]["embedding"]
            dot = sum(x * y for x, y in zip(a, b, strict=True))
            cosine = dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)) or 1.0)
            text = f"cosine similarity {cosine:.4f} ({len(a)} dimensions)"
        except Exception as exc:  # noqa: BLE001 - shown, never a crash
            text = f"error: {' '.join(str(exc).split())}"
        self.app.call_from_thread(self.query_one("#embed-result", Label).update, text)
