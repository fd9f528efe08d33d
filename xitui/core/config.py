"""Where things live and the user's settings (TOML, read with tomllib, written with tomli-w).

Environment variables win over the file: XITUI_HOME, XITUI_ENDPOINT, XITUI_API_KEY, XITUI_CONFIG,
XITUI_ALLOWED_HOSTS and XITUI_ALLOWED_ORIGINS (comma-separated).
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
    "niceness": int,
    "generation.max_tokens": int,
    "generation.temperature": float,
    "generation.top_p": float,
    "server.allowed_hosts": list,
    "server.allowed_origins": list,
    "server.max_body_mib": int,
    "server.ttl": str,
    "server.n_parallel": int,
    "server.warm": list,
    "server.allow_other_users": bool,
    "server.allowed_envs": list,
    "server.autoload": bool,
    "server.max_loaded": int,
    "server.max_loading": int,
    "server.max_restarts": int,
    "chats.save": bool,
}

#: Set in the environment of a view that lowered its priority (terminal/pacing.yield_to_models): a server
#: started from it, or from a child of it, would run at that lower priority.
VIEW_YIELDED_ENV = "XITUI_VIEW_YIELDED"

#: Environment variables that override a setting.
ENV_OVERRIDES = {
    "endpoint": "XITUI_ENDPOINT",
    "api_key": "XITUI_API_KEY",
    "server.allowed_hosts": "XITUI_ALLOWED_HOSTS",
    "server.allowed_origins": "XITUI_ALLOWED_ORIGINS",
    "server.warm": "XITUI_WARM",
}

#: Engines the warm worker can import ahead of launches (xitui/worker/warm.py). All of them by default:
#: idle, that process holds about 420 MiB (torch, transformers, sentence-transformers, llama.cpp; 40 MiB
#: for llama.cpp alone), and each worker forked from it shares those pages instead of loading its own.
WARM_ENGINES = ("llama.cpp", "transformers", "sentence_transformers")



#: Restarts a model's workers get within an hour after dying on their own (a crash in the model library,
#: the out-of-memory killer) before the model is left in error.
DEFAULT_MAX_RESTARTS = 5

#: Models a server loads on request at once (the others wait their turn; server.max_loading, 0: no limit).
DEFAULT_MAX_LOADING = 1

#: Largest request body the server reads: OpenAI's biggest embedding batch (2048 inputs of about 8k tokens)
#: is some 64 MiB of JSON.
DEFAULT_MAX_BODY_MIB = 64


class ConfigError(XituiError):
    """The config file (or an XITUI_* variable) says something xitui cannot use."""

    pass


def home_dir() -> Path:
    """XITUI_HOME, else the platform's data dir for xitui."""
    env = os.environ.get("XITUI_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("xitui", appauthor=False))


def server_record(home: Path) -> Path:
    """Where a running server says who serves where ({"pid", "host", "port"}); written by the server,
    read by `xitui stop`."""
    return home / "server.json"


def config_path() -> Path:
    env = os.environ.get("XITUI_CONFIG")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_dir

    return Path(user_config_dir("xitui", appauthor=False)) / "config.toml"


@dataclass
class Config:
    """The user's settings: config.toml over the defaults, with XITUI_* variables over both."""

    endpoint: str = DEFAULT_ENDPOINT
    api_key: str | None = None
    theme: str = "dark"
    #: How much lower than the model workers the dashboard and an interactive chat run (added to their nice
    #: value; 0: as the workers do), so that a view drops frames before a model drops tokens.
    niceness: int = 10
    generation: dict[str, Any] = field(
        default_factory=lambda: {"max_tokens": 512, "temperature": 0.7, "top_p": 0.95}
    )
    #: Who the server answers besides loopback clients (see xitui/server/guard.py), its body limit, and how
    #: long a model may stay idle when its launch names no ttl ("never", "30m"...).
    server: dict[str, Any] = field(
        default_factory=lambda: {"allowed_hosts": [], "allowed_origins": [], "max_body_mib": DEFAULT_MAX_BODY_MIB,
                                 "ttl": "never", "n_parallel": 0,
                                 "warm": ["all"], "allow_other_users": False, "allowed_envs": [],
                                 "autoload": True, "max_loaded": 0, "max_loading": DEFAULT_MAX_LOADING,
                                 "max_restarts": DEFAULT_MAX_RESTARTS}
    )
    #: Saved conversations (xitui/core/chats.py): `save = false` keeps none.
    chats: dict[str, Any] = field(default_factory=lambda: {"save": True})
    #: Dashboard key rebinding, binding id -> keys ("launch" = "L"), from the file's [keymap] table.
    keymap: dict[str, str] = field(default_factory=dict)
    #: Which source each value came from ("default", "file" or "env"), for `xitui config show`.
    sources: dict[str, str] = field(default_factory=dict)

    def flat(self) -> dict[str, Any]:
        values: dict[str, Any] = {"endpoint": self.endpoint, "api_key": self.api_key, "theme": self.theme,
                                  "niceness": self.niceness}
        values.update({f"generation.{k}": v for k, v in self.generation.items()})
        values.update({f"server.{k}": v for k, v in self.server.items()})
        values.update({f"chats.{k}": v for k, v in self.chats.items()})
        return values


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


def split_list(raw: str) -> list[str]:
    """A comma-separated setting (an environment variable, `config set`, a CLI option) as a list."""
    return [item.strip() for item in raw.split(",") if item.strip()]


def _fits(kind: type, value: Any) -> bool:
    if kind is list:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is bool:
        return isinstance(value, bool)
    return isinstance(value, kind) and not isinstance(value, bool)


def warm_engines(setting: list[str]) -> list[str]:
    """The engines `server.warm` names: a list of them, `all` or `none`."""
    items = [item.strip() for item in setting if item.strip()]
    if items == ["all"]:
        return list(WARM_ENGINES)
    if not items or items == ["none"]:
        return []
    unknown = [item for item in items if item not in WARM_ENGINES]
    if unknown:
        raise ConfigError(f"server.warm: {', '.join(unknown)} is not an engine "
                          f"(all, none, or some of: {', '.join(WARM_ENGINES)})")
    return [engine for engine in WARM_ENGINES if engine in items]


def load_config() -> Config:
    """The settings: defaults, then the config file, then environment variables."""
    cfg = Config()
    data = _read_file(config_path())
    for key, kind in SETTINGS.items():
        section, _, name = key.rpartition(".")
        source = data.get(section, {}) if section else data
        if isinstance(source, dict) and name in source and _fits(kind, source[name]):
            _put(cfg, key, source[name])
            cfg.sources[key] = "file"
    keymap = data.get("keymap")
    if isinstance(keymap, dict):
        cfg.keymap = {str(k): v for k, v in keymap.items() if isinstance(v, str)}
    for key, env in ENV_OVERRIDES.items():
        raw = os.environ.get(env)
        if raw:
            _put(cfg, key, split_list(raw) if SETTINGS[key] is list else raw)
            cfg.sources[key] = "env"
    return cfg


def _put(cfg: Config, key: str, value: Any) -> None:
    section, _, name = key.rpartition(".")
    if section:
        getattr(cfg, section)[name] = value
    else:
        setattr(cfg, name, value)


def set_value(key: str, raw: str) -> Any:
    """Write one setting to the config file (atomically); returns the typed value."""
    if key not in SETTINGS:
        raise ConfigError(f"unknown setting {key!r} (known: {', '.join(SETTINGS)})")
    kind = SETTINGS[key]
    try:
        if kind is bool:
            value: Any = _boolean(raw)
        else:
            value = split_list(raw) if kind is list else kind(raw)
    except ValueError:
        raise ConfigError(f"{key}: {raw!r} is not a valid {kind.__name__}") from None
    if key == "server.allowed_origins":
        for origin in value:
            check_origin(origin)
    if key == "server.warm":
        warm_engines(value)
    if key == "server.n_parallel" and not 0 <= value <= 64:
        raise ConfigError("server.n_parallel: from 1 to 64 (0: from the machine, the default)")
    if key == "niceness" and not 0 <= value <= 19:
        raise ConfigError("niceness: from 0 (views run as the models do) to 19 (views yield the most)")
    if key == "server.max_restarts" and value < 0:
        raise ConfigError("server.max_restarts: restarts per hour, 0 or more (0: a worker that dies is not restarted)")
    if key == "server.max_loading" and value < 0:
        raise ConfigError("server.max_loading: loads on request at once, 0 or more (0: no limit)")
    if key == "server.max_body_mib" and value < 1:
        raise ConfigError("server.max_body_mib: must be at least 1")
    if key == "server.ttl":
        from xitui.core.units import parse_duration

        try:
            parse_duration(value)
        except ValueError as exc:
            raise ConfigError(f"server.ttl: {exc}") from None
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


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(raw)


def check_origin(origin: str) -> str:
    """An allowed-origins entry: `*` or `scheme://host[:port]` as browsers send it (no path)."""
    if origin == "*":
        return origin
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest.rstrip("/"):
        raise ConfigError(f"allowed origin {origin!r}: write it as a browser sends it, e.g. http://localhost:3000")
    return origin.rstrip("/").lower()
