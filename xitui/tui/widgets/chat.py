"""The live chat pane: pick a model (running, or one that loads on request) and talk to it; conversations
are saved (core/saved_chats.py) and the model's earlier ones can be resumed from the session picker.

Chat models get a conversation with an editable system prompt; generate-only models get completion mode;
embedding models the similarity of two texts (widgets/embedding_view.py), rerank models a query's ranking of
passages (widgets/rerank_view.py). What a conversation is (history,
requests, figures, saving) is client/conversation.py's, as in `xitui chat`; this pane shows it. The stream
is read in a worker thread that hands each piece to the transcript's list; the transcript's frames draw
them (widgets change only on the screen's thread).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.worker import get_current_worker

from xitui.client.conversation import Answer, AnswerStats, Conversation
from xitui.core.safe_text import safe_line
from xitui.core.saved_chats import ChatStore
from xitui.tui.widgets.chat_pickers import ChatPickers
from xitui.tui.widgets.embedding_view import EmbeddingView
from xitui.tui.widgets.prompt_input import PromptInput
from xitui.tui.widgets.rerank_view import RerankView
from xitui.tui.widgets.transcript import Transcript

MODES = {"chat": "chat", "completion": "completion (a generate-only model: your text is continued)",
         "rerank": "rerank (passages ranked against a query)"}
#: Modes with their own view in place of the conversation.
VIEWS = ("embedding", "rerank")


def _availability(model: dict[str, Any]) -> str:
    """What the picker says of a model that is not ready yet."""
    if not model.get("loaded", True):
        return ", loads on request"
    return ", launching" if model.get("state") == "launching" else ""


class ChatPane(Vertical):
    """Pickers, the transcript, the input line (or, for an embedding or rerank model, its own view)."""

    DEFAULT_CSS = """
    ChatPane { height: 1fr; }
    ChatPane #chat-top { height: 1; margin-bottom: 1; }
    ChatPane #chat-model { width: 28; }
    ChatPane #chat-model > SelectOverlay { width: 52; }  /* wider than the picker: labels say more */
    ChatPane #chat-session { width: 30; }
    ChatPane #chat-system { width: 1fr; }
    ChatPane #chat-log { height: 1fr; }
    ChatPane .user { margin: 1 0 0 0; color: $text-accent; }
    ChatPane #chat-help { color: $text-muted; }
    ChatPane .answer { margin: 0; padding: 0; }
    ChatPane .stats { color: $text-muted; margin-bottom: 1; }
    ChatPane .reasoning { color: $text-muted; }
    ChatPane #embedding-box { height: auto; display: none; }
    ChatPane #rerank-box { display: none; }
    ChatPane.-embedding #embedding-box, ChatPane.-rerank #rerank-box { display: block; }
    ChatPane.-view #chat-log, ChatPane.-view PromptInput, ChatPane.-view #chat-system { display: none; }
    ChatPane.-view #chat-session { display: none; }
    ChatPane.-completion #chat-system { display: none; }
    """

    #: "chat", "completion", "embedding" or "rerank": what the chosen model does (the look follows it).
    mode: reactive[str] = reactive("chat")

    class Answered(Message):
        """An answer ended (finished, stopped or failed)."""

        def __init__(self, answer: Answer) -> None:
            super().__init__()
            self.answer = answer

    @dataclass
    class Saved(Message):
        """A save of this pane's conversation ended (`error` when it failed)."""

        uid: str | None
        error: str | None = None

    @dataclass
    class SessionsListed(Message):
        """The saved conversations of the pane's model were read (label, id)."""

        options: list[tuple[str, int]]
        error: str | None = None

    def __init__(self, client: Any, store: ChatStore | None = None, generation: dict[str, Any] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.client = client
        #: Saved conversations (None: none kept).
        self.store = store
        #: Generation parameters every request sends (the config's `generation` table).
        self.generation = dict(generation or {})
        #: The ready models offered, uid -> their listing entry.
        self.models: dict[str, dict[str, Any]] = {}
        self.uid: str | None = None
        self.conversation: Conversation | None = None
        self.last_answer = ""
        self.last_stats: AnswerStats | None = None
        #: An answer is being written (the input waits; Esc stops it).
        self.generating = False
        #: Esc was pressed while the answer being written came in.
        self._stop_asked = False
        #: Saves run on this one thread, in the order they were asked for, never on the screen's.
        self._saver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chat-save")

    def compose(self) -> ComposeResult:
        yield ChatPickers(id="chat-top")
        yield Transcript(id="chat-log")
        yield EmbeddingView(self.client, id="embedding-box")
        yield RerankView(self.client, id="rerank-box")
        yield PromptInput(id="chat-input")

    def on_unmount(self) -> None:
        # Not waited for here: the saving thread is not a daemon, so the saves asked for are made before
        # the process exits.
        self._saver.shutdown(wait=False)

    def watch_mode(self, mode: str) -> None:
        self.set_class(mode == "embedding", "-embedding")
        self.set_class(mode == "rerank", "-rerank")
        self.set_class(mode in VIEWS, "-view")
        self.set_class(mode == "completion", "-completion")

    def focus_input(self) -> None:
        """The keys go where the chosen model is asked: the input line, or its view's first field."""
        first = {"embedding": "#embed-a", "rerank": "#rerank-query"}.get(self.mode, "#chat-input")
        self.query_one(first).focus()

    @property
    def history(self) -> list[dict[str, str]]:
        return self.conversation.history if self.conversation is not None else []

    @property
    def session_id(self) -> int | None:
        return self.conversation.session_id if self.conversation is not None else None

    # --- which model ---------------------------------------------------------------------------------

    def show_models(self, models: dict[str, dict[str, Any]], loadable: dict[str, dict[str, Any]] | None = None) -> None:
        """Offer the running models (a launching one answers once ready), then those the first request loads
        (xitui's server.autoload); keep the chosen one while it is any of these."""
        self.models = {uid: m for uid, m in models.items() if (m.get("state") or "ready") in ("ready", "launching")}
        self.models.update({uid: m for uid, m in (loadable or {}).items() if uid not in models})
        options = [(f"{uid} ({m.get('model_type', 'LLM')}{_availability(m)})", uid) for uid, m in self.models.items()]
        self.query_one(ChatPickers).show_models(options, self.uid)
        if self.uid is not None and self.uid not in self.models:
            self.uid = None
            self.conversation = None

    @on(ChatPickers.ModelPicked)
    def _model_picked(self, event: ChatPickers.ModelPicked) -> None:
        self.choose(event.uid)
        if event.uid is not None:
            self.focus_input()  # picked to talk to it: the keys go where it is asked

    def choose(self, uid: str | None) -> None:
        """Talk to `uid` from now on (a new conversation, unless it is the model already chosen)."""
        if uid is not None and uid == self.uid and self.conversation is not None:
            return
        self.uid = uid
        model = self.models.get(uid or "", {})
        if model.get("model_type") in VIEWS:
            self.mode = str(model["model_type"])
        else:
            self.mode = "chat" if "chat" in (model.get("model_ability") or []) else "completion"
        for view in (self.query_one(EmbeddingView), self.query_one(RerankView)):
            view.uid, view.description = uid, model
        self.conversation = self._conversation(uid) if uid is not None else None
        if uid is not None:
            self.query_one(ChatPickers).pick_model(uid)
            what = MODES.get(self.mode) or "embedding" + (f", {model['dimensions']} dimensions"
                                                          if model.get("dimensions") else "")
            if not model.get("loaded", True):
                what += "; loads on request"
            self.notify(f"{uid}: {what}", timeout=2)
        self._list_sessions(uid)

    def _conversation(self, uid: str, session: Any = None) -> Conversation | None:
        if self.mode in VIEWS:
            return None
        model = self.models.get(uid, {})
        handle = self.client.handle_for(uid, model) if self.client is not None else None
        return Conversation(handle, model_uid=uid, model_name=str(model.get("model_name") or uid),
                            kind="chat" if self.mode == "chat" else "generate", params=self.generation,
                            store=self.store, system=self.query_one(ChatPickers).system or None, session=session,
                            save=self._save)

    # --- saved conversations -------------------------------------------------------------------------

    def _save(self, job: Any) -> None:
        uid = self.uid

        def run() -> None:
            # post_message, never call_from_thread: it does not wait, so a closing dashboard cannot hang it
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - shown, never a crash
                self.post_message(self.Saved(uid, f"could not save the conversation: {exc}"))
                return
            self.post_message(self.Saved(uid))

        self._saver.submit(run)

    @on(Saved)
    def _saved(self, event: Saved) -> None:
        event.stop()
        if event.error:
            self.notify(event.error, severity="warning")
        else:
            self._list_sessions(event.uid)

    @work(thread=True, exclusive=True, group="sessions")
    def _list_sessions(self, uid: str | None) -> None:
        found, error = [], None
        if uid is not None and self.store is not None and self.mode not in VIEWS:
            try:
                found = self.store.sessions(model_uid=uid, limit=30)
            except Exception as exc:  # noqa: BLE001 - a broken store is shown, never a crash
                error = f"saved conversations: {exc}"
        options = [(f"#{s.id} {s.title or '(empty)'} ({s.count})", s.id) for s in found]
        # post_message: dropped quietly if the pane closed meanwhile (call_from_thread would fail or wait)
        self.post_message(self.SessionsListed(options, error))

    @on(SessionsListed)
    def _sessions_listed(self, event: SessionsListed) -> None:
        event.stop()
        if event.error:
            self.notify(event.error, severity="warning")
        self.query_one(ChatPickers).show_sessions(event.options, self.session_id)

    @on(ChatPickers.SessionPicked)
    async def _session_picked(self, event: ChatPickers.SessionPicked) -> None:
        if event.session_id is None:
            if self.session_id is not None:
                await self.clear()
            return
        if self.store is None or self.uid is None or event.session_id == self.session_id:
            return
        session = self.store.get(event.session_id)
        self.stop()
        if session.kind == "chat":
            self.query_one(ChatPickers).system = session.system or ""
        self.conversation = self._conversation(self.uid, session)
        await self.query_one(Transcript).show(session.messages)
        self.last_answer = next((m.content for m in reversed(session.messages) if m.role == "assistant"), "")
        self.notify(f"resumed conversation #{session.id} ({len(session.messages)} messages)", timeout=2)

    # --- talking -----------------------------------------------------------------------------------

    @on(PromptInput.Submitted)
    async def _submitted(self, event: PromptInput.Submitted) -> None:
        if self.uid is None or self.conversation is None:
            self.notify("pick a model first", severity="warning")
            return
        if event.text == "/image" or event.text.startswith("/image "):
            self._attach_image(event.text[len("/image"):].strip())
            return
        if self.generating:
            self.notify("still answering: Esc stops it", severity="warning")
            return
        await self.send(event.text)

    @on(PromptInput.Choices)
    def _path_choices(self, event: PromptInput.Choices) -> None:
        shown = "  ".join(safe_line(name) for name in event.names[:24])
        more = f"  … {len(event.names) - 24} more" if len(event.names) > 24 else ""
        self.notify(shown + more, title="/image", timeout=6, markup=False)

    def _attach_image(self, path: str) -> None:
        """`/image PATH` in the input: an image for the next message (a vision model's)."""
        from xitui.core.errors import XituiError

        talk = self.conversation
        assert talk is not None
        if talk.kind != "chat" or not path:
            self.notify("/image PATH: an image file for the next message, to a chat model", severity="warning")
            return
        try:
            name = talk.attach(path)
        except XituiError as exc:
            self.notify(safe_line(exc), severity="error", markup=False)
            return
        self.notify(f"{safe_line(name)} goes with the next message", timeout=3, markup=False)

    async def send(self, text: str) -> None:
        talk = self.conversation
        assert talk is not None
        if not self.models.get(talk.model_uid, {}).get("loaded", True):
            self.notify(f"loading {talk.model_uid}: the answer starts once it is ready", timeout=4)
        attached = ", ".join(image.name for image in talk.attached)
        await self.query_one(Transcript).question(f"{text}\n[images: {attached}]" if attached else text,
                                                  list(talk.attached))
        talk.params = dict(self.generation)
        talk.system = self.query_one(ChatPickers).system or None
        self.generating = True
        self._generate(talk, text, self.query_one(Transcript))

    @work(thread=True, exclusive=True, group="chat")
    def _generate(self, talk: Conversation, text: str, transcript: Transcript) -> None:
        worker = get_current_worker()
        answer: Answer | None = None
        try:
            answer = talk.ask(text)
            answer.on_reasoning = transcript.add_thought
            for piece in answer:  # no message a piece: the transcript's frames pick them up at their pace
                transcript.add(piece)  # shown as the conversation keeps it, the piece read as Esc came too
                if worker.is_cancelled:
                    break
        except Exception as exc:  # noqa: BLE001 - shown under the answer, never a crash
            answer = answer or Answer(text, talk.kind, iter(()))
            answer.error = " ".join(str(exc).split())
        finally:
            if answer is not None:
                answer.close()  # a stopped answer: closing the request makes the server cancel it
        assert answer is not None
        talk.remember(answer)
        self.post_message(self.Answered(answer))

    @on(Answered)
    async def _answered(self, event: Answered) -> None:
        event.stop()
        answer = event.answer
        answer.stopped, self._stop_asked = self._stop_asked, False
        await self.query_one(Transcript).end(answer.stats.line(answer.note()))
        # the pane's state changes once the screen shows the end: what it says and what it shows agree
        self.generating = False
        self.last_stats = answer.stats
        self.last_answer = answer.text

    def stop(self) -> bool:
        """Esc: stop the answer being written; True when there was one."""
        if not self.generating:
            return False
        self._stop_asked = True
        self.workers.cancel_group(self, "chat")
        return True

    async def clear(self) -> None:
        """Ctrl+L: a new conversation (the last one stays saved)."""
        self.stop()
        self.last_answer = ""
        if self.conversation is not None:
            self.conversation = self.conversation.fresh()
        await self.query_one(Transcript).clear()
        self.query_one(ChatPickers).new_session()
