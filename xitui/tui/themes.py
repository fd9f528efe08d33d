"""Dashboard themes: `themes/*.tcss` files whose `$variable: value;` lines are a Textual theme palette.

The files live in the package (`xitui/themes`; the repository's top-level `themes` links there) and ship
inside the wheel, so they are found from a checkout and from an installed package alike; a user's own go in
`<config dir>/themes/NAME.tcss` and win over the shipped ones of the same name.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

from xitui.core.errors import XituiError

DEFAULT_THEME = "dark"
_DECLARATION = re.compile(r"^\s*\$([a-z][a-z0-9-]*)\s*:\s*([^;]+);", re.MULTILINE)
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
_PALETTE = ("primary", "secondary", "accent", "warning", "error", "success", "foreground", "background", "surface",
            "panel", "boost")


def theme_files() -> dict[str, Path]:
    """Theme name -> file: the shipped ones, then the user's (`<config dir>/themes`)."""
    found: dict[str, Path] = {}
    shipped = resources.files("xitui").joinpath("themes")
    for entry in sorted(shipped.iterdir(), key=lambda e: e.name) if shipped.is_dir() else []:
        if entry.name.endswith(".tcss"):
            found[entry.name[: -len(".tcss")]] = Path(str(entry))
    from xitui.core.config import config_path

    user = config_path().parent / "themes"
    if user.is_dir():
        for path in sorted(user.glob("*.tcss")):
            found[path.stem] = path
    return found


def read_palette(path: Path) -> dict[str, str]:
    """The `$name: value;` declarations of a theme file."""
    text = _COMMENT.sub("", path.read_text("utf-8"))
    return {name: value.strip() for name, value in _DECLARATION.findall(text)}


def load_theme(name: str) -> object:
    """The Textual Theme named `name` (`xitui-NAME`), built from its file; unknown names are an error."""
    from textual.theme import Theme

    files = theme_files()
    if name not in files:
        raise XituiError(f"no theme {name!r} (themes: {', '.join(files)})")
    palette = read_palette(files[name])
    if "primary" not in palette:
        raise XituiError(f"{files[name]}: a theme needs at least $primary")
    dark = palette.get("dark", "true").lower() != "false"
    extra = {k: v for k, v in palette.items() if k not in _PALETTE and k != "dark"}
    get = palette.get  # a colour the file leaves out is None: Textual derives it
    return Theme(
        name=f"xitui-{name}", primary=palette["primary"], secondary=get("secondary"), accent=get("accent"),
        warning=get("warning"), error=get("error"), success=get("success"), foreground=get("foreground"),
        background=get("background"), surface=get("surface"), panel=get("panel"), boost=get("boost"),
        dark=dark, variables=extra,
    )
