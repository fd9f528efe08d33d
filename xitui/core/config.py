"""Where things live and the user's settings (TOML, read with tomllib, written with tomli-w).

Environment variables win over the file: XITUI_HOME, XITUI_ENDPOINT, XITUI_API_KEY, XITUI_CONFIG.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xitui.core.errors import XituiError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9997
DEFAULT_ENDPOINT = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"

#: Settings a user may change with `xitui config set`, with their types.
SETTINGS: dict[str, type] = {
    "endpoint": str,
    "api_key": str,
    "theme": str,
    "generation.max_tokens": int,
    "generation.temperature": float,
    "generation.top_p": float,
}


class ConfigError(XituiError):
    pass


def home_dir() -> Path:
    """XITUI_HOME, else the platform's data dir for xitui."""
    env = os.environ.get("XITUI_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("xitui", appauthor=False))


def config_path() -> Path:
    env = os.environ.get("XITUI_CONFIG")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("xitui", appauthor=False)) / "config.toml"


@dataclass
class Config:
    endpoint: str = DEFAULT_ENDPOINT
    api_key: str | None = None
    theme: str = "dark"
    generation: dict[str, Any] = field(
        default_factory=lambda: {"max_tokens": 512, "temperature": 0.7, "top_p": 0.95}
    )
    #: Which source each value came from ("default", "file" or "env"), for `xitui config show`.
    sources: dict[str, str] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        values: dict[str, Any] = {"endpoint": self.endpoint, "api_key": self.api_key, "theme": self.theme}
        values.update({f"generation.{k}": v for k, v in self.generation.items()})
        return values


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def load_config() -> Config:
    """The settings: defaults, then the config file, then environment variables."""
    cfg = Config()
    data = _read_file(config_path())
    for key in ("endpoint", "api_key", "theme"):
        if isinstance(data.get(key), str):
            setattr(cfg, key, data[key])
            cfg.sources[key] = "file"
    gen = data.get("generation")
    if isinstance(gen, dict):
        for key, value in gen.items():
            if f"generation.{key}" in SETTINGS and isinstance(value, (int, float)):
                cfg.generation[key] = value
                cfg.sources[f"generation.{key}"] = "file"
    for key, env in (("endpoint", "XITUI_ENDPOINT"), ("api_key", "XITUI_API_KEY")):
        if os.environ.get(env):
            setattr(cfg, key, os.environ[env])
            cfg.sources[key] = "env"
    return cfg


def set_value(key: str, raw: str) -> Any:
    """Write one setting to the config file (atomically); returns the typed value."""
    if key not in SETTINGS:
        raise ConfigError(f"unknown setting {key!r} (known: {', '.join(SETTINGS)})")
    kind = SETTINGS[key]
    try:
        value: Any = kind(raw)
    except ValueError:
        raise ConfigError(f"{key}: {raw!r} is not a valid {kind.__name__}") from None
    if key == "endpoint" and not raw.startswith(("http://", "https://")):
        raise ConfigError("endpoint: must start with http:// or https://")
    path = config_path()
    data = _read_file(path)
    section, _, name = key.rpartition(".")
    target = data.setdefault(section, {}) if section else data
    target[name] = value
    import tomli_w

    from xitui.core.files import atomic_write

    atomic_write(path, tomli_w.dumps(data).encode("utf-8"))
    return value
