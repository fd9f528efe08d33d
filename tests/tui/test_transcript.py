"""The transcript shows an answer's line breaks as the model wrote them, saved or streamed."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.app import App, ComposeResult
from textual.widgets import Markdown

from xitui.core.saved_chats import ChatMessage
from xitui.tui.widgets.transcript import Transcript

POEM = "In the gentle foam,\nA sip of light,\nA moment of bliss.\n\n```\nx = 1\ny = 2\n```\n"


class One(App[None]):
    def compose(self) -> ComposeResult:
        yield Transcript()


def shown(answer: Markdown) -> list[str]:
    """The answer's lines as drawn: each of its innermost widgets, top to bottom."""
    leaves = sorted((w for w in answer.query("*") if not w.children), key=lambda w: w.region.y)
    texts = (leaf.render_line(y).text.strip() for leaf in leaves for y in range(leaf.size.height))
    return [text for text in texts if text]


async def drawn(pilot: Any, app: App[None], lines: int) -> list[str]:
    """The last answer's lines once Markdown has drawn at least `lines` of them (it renders in steps)."""
    for _ in range(500):
        text = shown(app.query(".answer").last())
        if len(text) >= lines:
            return text
        await pilot.pause()
    raise AssertionError(f"the answer drew {text}")


def test_saved_and_streamed_answers_keep_their_lines() -> None:
    async def main() -> None:
        app = One()
        async with app.run_test(size=(60, 30)) as pilot:
            transcript = app.query_one(Transcript)
            await transcript.show([ChatMessage("user", "A haiku?"), ChatMessage("assistant", POEM)])
            saved = await drawn(pilot, app, 5)
            assert saved[:3] == ["In the gentle foam,", "A sip of light,", "A moment of bliss."]
            assert "x = 1" in saved[3] and "y = 2" in saved[4]

            await transcript.question("Again?")
            for start in range(0, len(POEM), 3):  # pieces that cut lines and words, as a stream does
                transcript.add(POEM[start:start + 3])
            await transcript.end("done")
            assert (await drawn(pilot, app, 5))[:3] == ["In the gentle foam,", "A sip of light,",
                                                              "A moment of bliss."]

    asyncio.run(main())


def test_a_questions_images_are_drawn_under_it_and_a_broken_one_is_named() -> None:
    """Saved or just sent, a question's pictures are drawn under it (as text here: no terminal to draw on);
    one that cannot be decoded is named instead, and the rest still draws."""
    import io

    from PIL import Image

    from xitui.core.saved_chats import SavedImage

    out = io.BytesIO()
    Image.new("RGB", (64, 32), (200, 40, 40)).save(out, "PNG")
    good = SavedImage("red.png", "image/png", out.getvalue())
    broken = SavedImage("cut.png", "image/png", out.getvalue()[:40])

    async def main() -> None:
        app = One()
        async with app.run_test(size=(60, 40)) as pilot:
            transcript = app.query_one(Transcript)
            await transcript.show([ChatMessage("user", "What is it?", images=[good, broken]),
                                   ChatMessage("assistant", "Red.")])
            await pilot.pause()
            pictures = list(transcript.query(".picture"))
            assert len(pictures) == 1 and pictures[0].region.height == 10  # pictures.ROWS
            assert pictures[0].region.y > transcript.query(".user").first().region.y
            named = transcript.query(".picture-name")
            assert [str(label.render()) for label in named] == ["[image: cut.png]"]
            await transcript.question("And this?", [good])
            await pilot.pause()
            assert len(transcript.query(".picture")) == 2
            assert transcript.query(".picture").last().region.y < transcript.query(".answer").last().region.y

    asyncio.run(main())


def test_tab_completes_an_image_path_as_far_as_the_names_agree(tmp_path: Any) -> None:
    from xitui.tui.widgets.prompt_input import complete_path

    (tmp_path / "photos").mkdir()
    for name in ("cat.png", "car.jpg", "dog.png", ".hidden.png"):
        (tmp_path / "photos" / name).write_bytes(b"")
    (tmp_path / "photos" / "cats").mkdir()
    base = str(tmp_path)
    assert complete_path(f"{base}/pho") == (f"{base}/photos/", [])  # a folder: its slash, to go on into it
    assert complete_path(f"{base}/photos/d") == (f"{base}/photos/dog.png", [])
    assert complete_path(f"{base}/photos/ca") == (f"{base}/photos/ca", ["car.jpg", "cat.png", "cats/"])
    assert complete_path(f"{base}/photos/cat") == (f"{base}/photos/cat", ["cat.png", "cats/"])
    assert complete_path(f"{base}/photos/") == (f"{base}/photos/", ["car.jpg", "cat.png", "cats/", "dog.png"])
    assert complete_path(f"{base}/photos/.h") == (f"{base}/photos/.hidden.png", [])
    assert complete_path(f"{base}/photos/zebra") == (f"{base}/photos/zebra", [])  # nothing: left as typed
    assert complete_path(f"{base}/nowhere/x") == (f"{base}/nowhere/x", [])
    (tmp_path / "photos" / "dog.png").unlink()
    (tmp_path / "photos" / "dog.png").symlink_to(tmp_path / "photos" / "gone")  # a dangling link: a name
    assert complete_path(f"{base}/photos/do") == (f"{base}/photos/dog.png", [])


def test_tab_in_the_input_completes_the_image_path_and_lists_the_choices(tmp_path: Any) -> None:
    from xitui.tui.widgets.prompt_input import PromptInput

    (tmp_path / "photo-one.png").write_bytes(b"")
    (tmp_path / "photo-two.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_bytes(b"")
    choices: list[list[str]] = []

    class Box(App[None]):
        def compose(self) -> ComposeResult:
            yield PromptInput()

        def on_prompt_input_choices(self, event: PromptInput.Choices) -> None:
            choices.append(event.names)

    async def main() -> None:
        app = Box()
        async with app.run_test(size=(80, 10)) as pilot:
            box = app.query_one(PromptInput)
            box.focus()
            box.load_text(f"/image {tmp_path}/ph")
            box.move_cursor(box.document.end)
            await pilot.press("tab")
            assert box.text == f"/image {tmp_path}/photo-" and box.has_focus
            await pilot.pause()
            assert choices == [["photo-one.png", "photo-two.png"]]
            await pilot.press("t", "tab")
            assert box.text == f"/image {tmp_path}/photo-two.png"
            box.load_text("no command here")
            await pilot.press("tab")  # Tab elsewhere does what it always did (focus moves on)
            assert box.text == "no command here"

    asyncio.run(main())


def test_tab_completion_at_its_worst(tmp_path: Any) -> None:
    """A NUL in the typed path crashed the dashboard; a link loop hid a folder's names; only the first 2000
    entries of a big folder were read, so a name past them was never offered."""
    from xitui.tui.widgets.prompt_input import complete_path

    assert complete_path("a\x00b/") == ("a\x00b/", [])
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "look.png").write_bytes(b"")
    assert complete_path(f"{tmp_path}/lo") == (f"{tmp_path}/loo", ["look.png", "loop"])
    big = tmp_path / "big"
    big.mkdir()
    for i in range(3000):
        (big / f"f{i:05d}.png").write_bytes(b"")
    (big / "zz-target.png").write_bytes(b"")
    assert complete_path(f"{big}/zz") == (f"{big}/zz-target.png", [])
    assert complete_path(f"{big}/f0000") == (f"{big}/f0000", [f"f0000{i}.png" for i in range(10)])


def test_a_picture_of_more_pixels_than_a_server_reads_is_named_not_drawn() -> None:
    """A 13000x13000 PNG of a few hundred KB took the dashboard's thread 1.6 s and 700 MB to draw."""
    import io

    from PIL import Image

    from xitui.core.saved_chats import SavedImage
    from xitui.tui.widgets.pictures import picture

    out = io.BytesIO()
    Image.new("L", (5000, 4000), 0).save(out, "PNG")
    shown = picture(SavedImage("wide.png", "image/png", out.getvalue()))
    assert "picture-name" in shown.classes and str(shown.render()) == "[image: wide.png]"
