"""Images in the chat transcript, drawn by textual-image: Sixel or the Terminal Graphics Protocol where the
terminal has one, colored half-cells where it has not (tmux, most SSH sessions), characters where the output
is no terminal. Its module asks the terminal what it can do, which is possible only before Textual takes the
terminal: `probe_terminal` runs before the dashboard starts (about 0.2 s in tmux, where nothing answers the
questions and each waits for its time-out)."""

from __future__ import annotations

import contextlib
import io
from typing import Any

from textual.widgets import Label

from xitui.core.safe_text import safe_line
from xitui.core.saved_chats import SavedImage

#: Rows of the transcript an image takes (its width follows from its shape).
ROWS = 10
#: The formats opened here: those the server reads (server/api/images.py), WebP included; and the pixels an
#: image may have, as there.
FORMATS = ["PNG", "JPEG", "GIF", "BMP", "WEBP"]
MAX_PIXELS = 4096 * 4096


def probe_terminal() -> None:
    """Let textual-image find what this terminal draws images with, before the dashboard starts."""
    # no terminal to ask, or one that answers oddly: the images are drawn as text
    with contextlib.suppress(Exception):
        import textual_image.widget  # noqa: F401 - its import asks the terminal


def picture(image: SavedImage) -> Any:
    """A widget that shows the image (its name under it when it cannot be drawn)."""
    from PIL import Image

    try:
        from textual_image.widget import Image as ImageWidget

        with Image.open(io.BytesIO(image.data), formats=FORMATS) as opened:
            width, height = opened.size
            if width * height > MAX_PIXELS:  # (a 13000x13000 PNG: 1.6 s and 700 MB on the dashboard's thread)
                raise ValueError("more pixels than a server reads")
            opened.draft("RGB", (512, 512))  # (a JPEG decodes at a fraction of its size)
            opened.thumbnail((512, 512))  # (more pixels than any terminal cell grid shows)
            shown = opened.convert("RGB")
    except Exception:  # noqa: BLE001 - a picture that cannot be drawn is named instead
        return Label(f"[image: {safe_line(image.name)}]", classes="picture-name", markup=False)
    widget = ImageWidget(shown, classes="picture")
    widget.tooltip = safe_line(image.name)
    return widget
