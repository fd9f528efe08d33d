"""The chat store: sessions and messages in SQLite, search, export, and what survives crashes and
concurrent writers (real processes, a real file)."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xitui.core.errors import NotFoundError
from xitui.core.saved_chats import ChatMessage, ChatStore, ChatStoreError, to_json, to_markdown

EXPECTED = Path(__file__).resolve().parent / "expected"


def test_sessions_are_saved_listed_and_read_back(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    first = store.new_session("chat", "gemma", "demo-gemma3-270m", "Be brief.", {"temperature": 0.2})
    store.add(first, ChatMessage("user", "What is the capital of France?"),
              ChatMessage("assistant", "Paris.", ttft=0.034, tokens_per_s=81.5, tokens=3))
    second = store.new_session("generate", "gemma", None)
    store.add(second, ChatMessage("user", "Once upon a time"), ChatMessage("assistant", " there was a king."))
    listed = store.sessions()
    assert [s.id for s in listed] == [second, first]  # the most recently used first
    assert listed[1].title == "What is the capital of France?" and listed[1].count == 2
    session = store.get(first)
    assert session.system == "Be brief." and session.params == {"temperature": 0.2}
    assert session.conversation() == [{"role": "system", "content": "Be brief."},
                                      {"role": "user", "content": "What is the capital of France?"},
                                      {"role": "assistant", "content": "Paris."}]
    assert session.messages[1].ttft == 0.034 and session.messages[1].tokens == 3
    assert store.last(kind="chat").id == first
    assert [s.id for s in store.sessions(model_uid="other")] == []
    store.update(first, system="", params={"temperature": 0.0})
    assert store.get(first).system is None and store.get(first).params == {"temperature": 0.0}
    store.delete(second)
    with pytest.raises(NotFoundError, match="no saved chat session"):
        store.get(second)
    with pytest.raises(NotFoundError):
        store.add(second, ChatMessage("user", "x"))


def test_a_new_session_comes_with_its_first_message_or_not_at_all(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    sid = store.new_session("chat", "m", messages=(ChatMessage("user", "A new topic."),))
    listed = store.sessions()
    assert [(s.id, s.title, s.count) for s in listed] == [(sid, "A new topic.", 1)]
    with pytest.raises(ChatStoreError):  # a message that cannot be written takes its session with it
        store.new_session("chat", "m", messages=(ChatMessage("user", None),))  # type: ignore[arg-type]
    assert [s.id for s in store.sessions()] == [sid]


def test_search_finds_words_phrases_and_prefixes(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    one = store.new_session("chat", "a")
    store.add(one, ChatMessage("user", "Tell me about the blue whale"), ChatMessage("assistant", "It is huge."))
    two = store.new_session("chat", "b")
    store.add(two, ChatMessage("user", "What do whales eat?"), ChatMessage("assistant", "Krill, mostly."))
    assert {h["session_id"] for h in store.search("whale")} == {one}
    assert {h["session_id"] for h in store.search("whale*")} == {one, two}
    assert [h["session_id"] for h in store.search('"blue whale"')] == [one]
    assert store.search("krill")[0]["role"] == "assistant" and "[Krill]" in store.search("krill")[0]["snippet"]
    assert store.search("what? (eat)")  # punctuation is read as words, never as query syntax
    store.delete(one)
    assert store.search("whale") == []  # the index follows deletions
    with pytest.raises(ChatStoreError):
        store.search("   ")


def test_markdown_and_json_exports(tmp_path: Path) -> None:
    store = ChatStore(tmp_path)
    sid = store.new_session("chat", "gemma", "demo-gemma3-270m", "Answer in one line.", {"temperature": 0.0})
    store.add(sid, ChatMessage("user", "Name a colour.", created=0.0),
              ChatMessage("assistant", "**Blue**, like the sea.\n", created=1.0, ttft=0.05, tokens_per_s=80.0,
                          tokens=7))
    session = store.get(sid)
    session.created = time.mktime((2026, 11, 26, 9, 30, 0, 0, 0, -1))
    assert to_markdown(session) == (EXPECTED / "chat_export.md").read_text()
    assert '"content": "**Blue**, like the sea.\\n"' in to_json(session)


def _writer(home: str, label: str, count: int) -> None:
    store = ChatStore(Path(home))
    for i in range(count):
        sid = store.new_session("chat", label)
        store.add(sid, ChatMessage("user", f"{label} question {i}"), ChatMessage("assistant", f"{label} answer {i}"))


def test_two_processes_writing_at_once_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), label, 40)) for label in ("left", "right")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
        assert proc.exitcode == 0
    store = ChatStore(tmp_path)
    sessions = store.sessions(limit=1000)
    assert len(sessions) == 80 and all(s.count == 2 for s in sessions)
    assert len(store.search("left", limit=1000)) == 80 and len(store.search("right", limit=1000)) == 80


def test_a_writer_killed_mid_stream_leaves_a_readable_store(tmp_path: Path) -> None:
    """SIGKILL a process that keeps writing: the file passes SQLite's integrity check, and every session has
    both halves of each exchange or none (an exchange is one transaction)."""
    code = ("import sys; from pathlib import Path; from xitui.core.saved_chats import ChatStore, ChatMessage\n"
            "s = ChatStore(Path(sys.argv[1]))\n"
            "while True:\n"
            "    sid = s.new_session('chat', 'crash')\n"
            "    s.add(sid, ChatMessage('user', 'q' * 5000), ChatMessage('assistant', 'a' * 50000))\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)])
    deadline = time.monotonic() + 30
    while not (tmp_path / "chats.sqlite3").exists() or len(ChatStore(tmp_path).sessions(limit=5)) < 5:
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    conn = sqlite3.connect(tmp_path / "chats.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    store = ChatStore(tmp_path)
    sessions = store.sessions(limit=100000)
    assert sessions and all(s.count in (0, 2) for s in sessions)
    sid = store.new_session("chat", "after")  # and it takes writes again
    store.add(sid, ChatMessage("user", "still here?"))
    assert store.get(sid).messages[0].content == "still here?"


# --- a question's images: kept once by hash, sent again on resume, shown where they were -------------------


def _png(color: tuple[int, int, int]) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (8, 8), color).save(out, "PNG")
    return out.getvalue()


def test_images_are_kept_once_sent_again_and_go_with_the_last_message_that_sent_them(tmp_path: Path) -> None:
    from xitui.core.saved_chats import SavedImage, answered

    store = ChatStore(tmp_path)
    red, blue = _png((255, 0, 0)), _png((0, 0, 255))
    first = store.new_session("chat", "vlm", messages=(
        ChatMessage("user", "What is this?", images=[SavedImage("red.png", "image/png", red)]),
        ChatMessage("assistant", "Red.")))
    store.add(first, ChatMessage("user", "And these?", images=[SavedImage("blue.png", "image/png", blue),
                                                                SavedImage("red-again.png", "image/png", red)]),
              ChatMessage("assistant", "Blue, red."))
    second = store.new_session("chat", "vlm", messages=(
        ChatMessage("user", "Again", images=[SavedImage("red.png", "image/png", red)]),))
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 2  # red is kept once, for all three
    session = store.get(first)
    assert [[i.name for i in m.images] for m in session.messages] == [["red.png"], [], ["blue.png", "red-again.png"], []]
    assert session.messages[2].images[1].data == red
    resent = answered(session.messages)
    assert resent[0]["content"][0] == {"type": "text", "text": "What is this?"}
    assert resent[0]["content"][1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert resent[1] == {"role": "assistant", "content": "Red."}
    store.delete(first)
    with sqlite3.connect(store.path) as conn:  # blue went with its last message; red is still sent by `second`
        assert [row[0] for row in conn.execute("SELECT kind FROM images")] == ["image/png"]
    assert store.get(second).messages[0].images[0].data == red
    store.delete(second)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM images").fetchone()[0] == 0


def test_show_says_where_each_image_was_and_writes_them_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                             ) -> None:
    from tests.support.cli import xitui
    from xitui.core.saved_chats import SavedImage

    monkeypatch.setenv("XITUI_HOME", str(tmp_path / "home"))
    store = ChatStore(tmp_path / "home")
    red = _png((255, 0, 0))
    sid = store.new_session("chat", "vlm", messages=(
        ChatMessage("user", "Compare", images=[SavedImage("a [link](x).png", "image/png", red),
                                               SavedImage("b.png", "image/png", red)]),
        ChatMessage("assistant", "The same.")))
    shown = xitui("chats", "show", str(sid), env={"XITUI_PLAIN": "1"})
    assert shown.returncode == 0, shown.stderr
    digest = __import__("hashlib").sha256(red).hexdigest()
    assert f"*[image: a \\[link\\]\\(x\\).png, image/png, {len(red)} bytes, sha256 {digest[:12]}]*" in shown.stdout
    assert shown.stdout.index("Compare") < shown.stdout.index("image: b.png") < shown.stdout.index("The same.")
    folder = tmp_path / "pictures"
    exported = xitui("chats", "export", str(sid), "--images", str(folder), "-o", str(tmp_path / "chat.md"))
    assert exported.returncode == 0, exported.stderr
    assert [p.name for p in folder.iterdir()] == [f"{digest[:16]}.png"]  # one file for the image sent twice
    assert (folder / f"{digest[:16]}.png").read_bytes() == red
    assert f"![b.png]({(folder / digest[:16]).as_posix()}.png)" in (tmp_path / "chat.md").read_text()
    as_json = xitui("chats", "show", str(sid), "--json")
    images = __import__("json").loads(as_json.stdout)["messages"][0]["images"]
    assert images[1] == {"name": "b.png", "kind": "image/png", "sha256": digest, "bytes": len(red)}
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    refused = xitui("chats", "show", str(sid), "--images", str(blocked / "sub"))
    assert refused.returncode == 1 and "cannot write the images into" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_only_image_files_servers_read_are_attached(tmp_path: Path) -> None:
    """An SVG named .svg was attached, saved with its question, then refused by the server: the store kept an
    image no model ever read. The file's first bytes decide, not its name."""
    from xitui.client.conversation import Conversation
    from xitui.core.errors import XituiError

    talk = Conversation(None, model_uid="m", model_name=None, kind="chat")
    (tmp_path / "drawing.svg").write_text("<svg xmlns='http://www.w3.org/2000/svg'/>")
    (tmp_path / "fake.png").write_text("not a picture at all")
    (tmp_path / "real.jpg").write_bytes(_png((1, 2, 3)))  # a PNG whatever its name says
    for name, says in (("drawing.svg", "not an image servers read"), ("fake.png", "not an image servers read")):
        with pytest.raises(XituiError) as refused:
            talk.attach(str(tmp_path / name))
        assert says in str(refused.value)
    talk.attach(str(tmp_path / "real.jpg"))
    assert [(image.name, image.kind) for image in talk.attached] == [("real.jpg", "image/png")]
