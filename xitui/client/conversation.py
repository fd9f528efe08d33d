"""One conversation with one running model, below every front end that talks to one (`xitui chat`,
`xitui generate`, the dashboard's chat pane): the history, the request each turn sends, the pieces read from
the stream, the figures of each answer, and the saving of every turn in the chat store (core/saved_chats.py).

Front ends only show: they iterate an `Answer` for its pieces and hand it back to `Conversation.remember`.
Saving goes through `save`, a function that runs a save job: called at once by default; the dashboard
passes one that queues the jobs on one thread, so they stay in order and never hold up the screen.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from xitui.core.saved_chats import ChatMessage, ChatSession, ChatStore, SavedImage, answered

#: Image files by their first bytes: the kinds OpenAI-style servers read (WebP is told by its RIFF header).
IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF87a", "image/gif"),
               (b"GIF89a", "image/gif"), (b"BM", "image/bmp"))

#: Runs a save job (now, or queued: see the module docstring).
Saver = Callable[[Callable[[], None]], None]


def _now(job: Callable[[], None]) -> None:
    job()


@dataclass
class AnswerStats:
    """The figures of one answer: time to first piece, rate, and tokens (the server's count when it gives
    one in the stream's usage, else the pieces received)."""

    started: float = field(default_factory=time.monotonic)
    first: float | None = None
    last: float | None = None
    pieces: int = 0
    #: The server's count of generated tokens, when it says (the last chunk's usage).
    usage_tokens: int | None = None

    def piece(self) -> None:
        now = time.monotonic()
        self.first = self.first or now
        self.last = now
        self.pieces += 1

    @property
    def ttft(self) -> float | None:
        return None if self.first is None else self.first - self.started

    @property
    def tokens(self) -> int:
        return self.usage_tokens if self.usage_tokens is not None else self.pieces

    @property
    def tokens_per_s(self) -> float | None:
        """Tokens after the first over the time they took (the first one's wait is the ttft)."""
        span = (self.last or 0) - (self.first or 0)
        return (self.tokens - 1) / span if self.tokens > 1 and span > 0 else None

    def line(self, note: str | None = None) -> str:
        """`first token 85 ms · 61.2 tokens/s · 32 tokens`, the same in every front end."""
        if self.first is None or self.ttft is None:
            text = "no answer"
        else:
            rate = self.tokens_per_s
            text = (f"first token {self.ttft * 1000:.0f} ms · " + (f"{rate:.1f} tokens/s · " if rate else "")
                    + f"{self.tokens} tokens")
        return f"{text} · {note}" if note else text


class Answer:
    """One answer as it streams: iterate it for its text pieces; `close` ends the request early (the
    server then cancels the generation). `text`, `stats`, `stopped` and `error` say how it went."""

    def __init__(self, question: str, kind: str, chunks: Iterator[dict[str, Any]],
                 stats: AnswerStats | None = None):
        self.question = question
        #: The question as it was sent (its content parts, when it carried images).
        self.question_content: str | list[dict[str, Any]] = question
        self.kind = kind
        self.text = ""
        self.stats = stats or AnswerStats()
        self.stopped = False
        self.error: str | None = None
        #: A thinking model's reasoning (`reasoning_content`), apart from the answer.
        self.reasoning = ""
        #: Called with each piece of reasoning as it streams (a view that shows it sets this).
        self.on_reasoning: Callable[[str], None] | None = None
        #: The calls the answer makes, put together from the stream's pieces (OpenAI's shape).
        self.tool_calls: list[dict[str, Any]] = []
        self._chunks = chunks

    def __iter__(self) -> Iterator[str]:
        for chunk in self._chunks:
            usage = chunk.get("usage")
            if usage and usage.get("completion_tokens") is not None:
                self.stats.usage_tokens = int(usage["completion_tokens"])
            choice = (chunk.get("choices") or [{}])[0]
            delta = (choice.get("delta") or {}) if self.kind == "chat" else {}
            thought = delta.get("reasoning_content")
            if thought:
                self.stats.piece()
                self.reasoning += thought
                if self.on_reasoning is not None:
                    self.on_reasoning(thought)
            for call in delta.get("tool_calls") or []:
                self._add_call(call)
            piece = delta.get("content") if self.kind == "chat" else choice.get("text")
            if piece:
                self.stats.piece()
                self.text += piece
                yield piece

    def _add_call(self, part: dict[str, Any]) -> None:
        index = part.get("index", len(self.tool_calls))
        while len(self.tool_calls) <= index:
            self.tool_calls.append({"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        call = self.tool_calls[index]
        call["id"] = part.get("id") or call["id"]
        function = part.get("function") or {}
        call["function"]["name"] += function.get("name") or ""
        call["function"]["arguments"] += function.get("arguments") or ""

    def stop(self) -> None:
        """The user stopped it: what came so far is the answer."""
        self.stopped = True
        self.close()

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def note(self) -> str | None:
        """What to add after the figures: why it ended early."""
        return f"error: {self.error}" if self.error else "stopped" if self.stopped else None


class Conversation:
    """A conversation with the model behind `handle` (a client handle): `kind` "chat" sends the history
    as messages, "generate" sends each text as a prompt to continue. With a `store`, each question is saved
    before its answer is asked for, and each answer once it ends."""

    def __init__(self, handle: Any, *, model_uid: str, model_name: str | None, kind: str,
                 params: dict[str, Any] | None = None, store: ChatStore | None = None, system: str | None = None,
                 session: ChatSession | None = None, save: Saver = _now):
        self.handle = handle
        self.model_uid = model_uid
        self.model_name = model_name
        self.kind = kind
        self.params = dict(params or {})
        self.store = store
        self.system = system
        #: The conversation so far (chat), as requests send it, without the system prompt (a turn with images
        #: keeps its content parts: the model sees them again in later turns, from cells it kept).
        self.history: list[dict[str, Any]] = []
        #: Images for the next question, attached with `attach` (saved with it: core/saved_chats.py).
        self.attached: list[SavedImage] = []
        #: The saved session; set by the first save (on the saving thread), never changed after.
        self.session_id: int | None = None
        self._save = save
        if session is not None:
            self.session_id = session.id
            self.system = session.system if system is None else system
            self.history = answered(session.messages)

    # --- one turn ----------------------------------------------------------------------------------

    def messages_for(self, text: str) -> list[dict[str, Any]]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return [*head, *self.history, {"role": "user", "content": self._question(text)}]

    def _question(self, text: str) -> str | list[dict[str, Any]]:
        if not self.attached:
            return text
        return [{"type": "text", "text": text},
                *({"type": "image_url", "image_url": {"url": image.data_url()}} for image in self.attached)]

    def attach(self, path: str) -> str:
        """An image for the next question (a vision model's); its file name. One line for a file that is
        missing, too large or not an image file's kind."""
        import mimetypes
        from pathlib import Path

        from xitui.core.errors import XituiError

        file = Path(path).expanduser()
        try:
            size = file.stat().st_size
            if not file.is_file():
                raise XituiError(f"{path}: not a file")
            if size > IMAGE_BYTES:
                raise XituiError(f"{path}: {size / 2**20:.1f} MiB; an image may take {IMAGE_BYTES >> 20} MiB")
            data = file.read_bytes()
        except OSError as exc:
            raise XituiError(f"{path}: {exc.strerror}") from None
        kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if not kind.startswith("image/"):
            raise XituiError(f"{path}: not an image file ({kind})")
        sniffed = next((real for magic, real in IMAGE_MAGIC if data.startswith(magic)), None)
        if sniffed is None and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            sniffed = "image/webp"
        if sniffed is None:  # (an SVG, a HEIC...: the server would refuse it, after it was saved)
            raise XituiError(f"{path}: not an image servers read (PNG, JPEG, GIF, BMP, WebP)")
        self.attached.append(SavedImage(file.name, sniffed, data))
        return file.name

    def ask(self, text: str) -> Answer:
        """Save the question, send it, and return its answer to iterate (nothing is read yet)."""
        question = self._question(text)
        self.save_question(text)
        config = {**self.params, "stream": True}
        stats = AnswerStats()  # the time to the first token counts from the request, not from its answer's head
        if self.kind == "chat":
            chunks = self.handle.chat(self.messages_for(text), generate_config=config)
        else:
            chunks = self.handle.generate(text, generate_config=config)
        self.attached = []
        answer = Answer(text, self.kind, chunks, stats)
        answer.question_content = question
        return answer

    def complete(self, text: str) -> dict[str, Any]:
        """One turn without streaming: the server's whole answer (a chat.completion or a completion),
        remembered and saved like a streamed one."""
        question = self._question(text)
        self.save_question(text)
        config = {**self.params, "stream": False}
        calls: list[dict[str, Any]] = []
        if self.kind == "chat":
            result = self.handle.chat(self.messages_for(text), generate_config=config)
            self.attached = []
            content = result["choices"][0]["message"].get("content") or ""
            calls = result["choices"][0]["message"].get("tool_calls") or []
        else:
            result = self.handle.generate(text, generate_config=config)
            content = result["choices"][0].get("text") or ""
        answer = Answer(text, self.kind, iter(()))
        answer.question_content = question
        answer.text = content
        answer.tool_calls = calls
        answer.stats.usage_tokens = (result.get("usage") or {}).get("completion_tokens")
        self.remember(answer)
        return result

    def remember(self, answer: Answer) -> None:
        """The answer ended (finished, stopped or failed): keep what came in the history and the store."""
        if not answer.text:
            return
        if self.kind == "chat":
            self.history += [{"role": "user", "content": answer.question_content},
                             {"role": "assistant", "content": answer.text}]
        if self.store is None:
            return
        stats = answer.stats
        message = ChatMessage("assistant", answer.text, ttft=stats.ttft, tokens_per_s=stats.tokens_per_s,
                              tokens=stats.tokens)
        self._save(lambda: self._add(message))

    # --- saving --------------------------------------------------------------------------------------

    def save_question(self, text: str) -> None:
        """Saved before the answer is asked for: a process killed mid-answer loses only the answer."""
        if self.store is None:
            return
        message = ChatMessage("user", text, images=list(self.attached))

        def job() -> None:
            assert self.store is not None
            if self.session_id is None:
                self.session_id = self.store.new_session(self.kind, self.model_uid, self.model_name, self.system,
                                                         self.params, messages=(message,))
            else:
                self.store.add(self.session_id, message)

        self._save(job)

    def _add(self, message: ChatMessage) -> None:
        if self.store is not None and self.session_id is not None:
            self.store.add(self.session_id, message)

    def set_system(self, text: str | None) -> None:
        self.system = text or None
        if self.store is not None:
            self._save(lambda: self._update(system=text or ""))

    def set_param(self, key: str, value: Any) -> None:
        self.params[key] = value
        if self.store is not None:
            self._save(lambda: self._update(params=dict(self.params)))

    def _update(self, **fields: Any) -> None:
        if self.store is not None and self.session_id is not None:
            self.store.update(self.session_id, **fields)

    def save_to(self, store: ChatStore) -> int:
        """Start saving a conversation that was not being saved: what was said so far, then every turn."""
        self.store = store
        said = tuple(_saved(m) for m in self.history)
        self.session_id = store.new_session(self.kind, self.model_uid, self.model_name, self.system, self.params,
                                            messages=said)
        return self.session_id

    def fresh(self) -> Conversation:
        """A new conversation with the same model, settings and store (the old one stays saved)."""
        return Conversation(self.handle, model_uid=self.model_uid, model_name=self.model_name, kind=self.kind,
                            params=self.params, store=self.store, system=self.system, save=self._save)

    def snapshot(self) -> ChatSession:
        """This conversation as a session (the saved one when there is one)."""
        if self.store is not None and self.session_id is not None:
            return self.store.get(self.session_id)
        now = time.time()
        return ChatSession(id=0, created=now, updated=now, kind=self.kind, model_uid=self.model_uid,
                           model_name=self.model_name, system=self.system, params=dict(self.params),
                           messages=[ChatMessage(m["role"], m["content"]) for m in self.history])


#: The largest image file a conversation attaches (the server's limit).
IMAGE_BYTES = 20 * 2**20


def _saved(message: dict[str, Any]) -> ChatMessage:
    """A message of the history as a saved chat keeps it: its text, and the images its parts sent."""
    import base64

    content = message["content"]
    if isinstance(content, str):
        return ChatMessage(message["role"], content)
    images: list[SavedImage] = []
    for part in content:
        url = (part.get("image_url") or {}).get("url") or "" if part.get("type") == "image_url" else ""
        head, _, payload = url.partition(",")
        if head.startswith("data:") and head.endswith(";base64"):
            images.append(SavedImage(f"image {len(images) + 1}", head[5:-7] or "image/png", base64.b64decode(payload)))
    text = "".join(p.get("text") or "" for p in content if p.get("type") == "text")
    return ChatMessage(message["role"], text, images=images)
