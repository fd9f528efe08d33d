"""Where things live and the user's settings (TOML, read with tomllib, written with tomli-w).

Every setting is declared once, on the section classes below: its type, its default, its range, what it
means (`description`, which is also the rule an out-of-range value is told) and the environment variable
that overrides it (`Env`). The file, the environment and `xitui config set` are all checked against that
declaration by pydantic models built from it (`_model`), so a value that is wrongly typed or out of range
is an error naming its key, wherever it came from.

The sections are plain classes, not pydantic models, so that a command that finds nothing to check (no
config file, no setting's variable) takes the declared defaults without importing pydantic: its import and
the models' build were ~100 ms of a ~300 ms `xitui registrations` (bench/cli_startup.py).

Besides the settings' own variables, XITUI_HOME and XITUI_CONFIG say where the data and the file live.
"""

from __future__ import annotations

import ast
import copy
import os
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import UnionType
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

from xitui.core.errors import XituiError

if TYPE_CHECKING:  # in the annotations below, which only _model evaluates
    from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
    from pydantic.fields import FieldInfo

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 9997
DEFAULT_ENDPOINT = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"

#: Set in the environment of a view that lowered its priority (terminal/pacing.yield_to_models): a server
#: started from it, or from a child of it, would run at that lower priority.
VIEW_YIELDED_ENV = "XITUI_VIEW_YIELDED"

#: Engines the warm worker can import ahead of launches (xitui/worker/warm_worker.py). All of them by default:
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


@dataclass(frozen=True)
class Env:
    """On a setting's type: the environment variable that overrides it (comma-separated for a list); an
    empty variable counts as unset."""

    name: str


def split_list(raw: str) -> list[str]:
    """A comma-separated setting (an environment variable, `config set`, a CLI option) as a list."""
    return [item.strip() for item in raw.split(",") if item.strip()]


def check_origin(origin: str) -> str:
    """An allowed-origins entry: `*` or `scheme://host[:port]` as browsers send it (no path)."""
    if origin == "*":
        return origin
    scheme, sep, rest = origin.partition("://")
    if not sep or scheme not in ("http", "https") or not rest or "/" in rest.rstrip("/"):
        raise ConfigError(f"allowed origin {origin!r}: write it as a browser sends it, e.g. http://localhost:3000")
    return origin.rstrip("/").lower()


def _engines(setting: list[str]) -> list[str]:
    """The engines `server.warm` names: a list of them, `all` or `none`."""
    items = [item.strip() for item in setting if item.strip()]
    if items == ["all"]:
        return list(WARM_ENGINES)
    if not items or items == ["none"]:
        return []
    unknown = [item for item in items if item not in WARM_ENGINES]
    if unknown:
        raise ValueError(f"{', '.join(unknown)} is not an engine (all, none, or some of: {', '.join(WARM_ENGINES)})")
    return [engine for engine in WARM_ENGINES if engine in items]


# --- the settings ----------------------------------------------------------------------------------


def _seconds_are_a_ttl(value: Any) -> Any:
    """`ttl = 600` in the file: seconds, as `xitui launch --ttl 600` reads them."""
    return str(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else value


def _ttl_is_a_duration(value: str) -> str:
    from xitui.core.units import parse_duration

    parse_duration(value)
    return value


def _warm_names_engines(value: list[str]) -> list[str]:
    _engines(value)
    return value


def _origins_as_browsers_send_them(value: list[str]) -> list[str]:
    for origin in value:
        try:
            check_origin(origin)
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
    return value


def _endpoint_is_a_url(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    return value


class _Section:
    """A table of config.toml. Each annotated attribute is a setting: its annotation says what it takes
    (pydantic's Field and validators, evaluated only by _model) and the value assigned is its default; a
    section as the default is a sub-table. An instance holds values _model has checked, or the defaults."""

    def __init__(self, **values: Any) -> None:
        for name in self.names():
            default = getattr(type(self), name)
            if name not in values:
                setattr(self, name, copy.deepcopy(default))
            elif isinstance(default, _Section) and isinstance(values[name], dict):
                setattr(self, name, type(default)(**values.pop(name)))
            else:
                setattr(self, name, values.pop(name))
        if values:
            raise TypeError(f"{type(self).__name__}: no setting {', '.join(values)}")

    @classmethod
    def names(cls) -> list[str]:
        """The section's settings and sub-tables, in declaration order."""
        return [name for name in cls.__dict__.get("__annotations__", {}) if not name.startswith("_")]

    def model_dump(self) -> dict[str, Any]:
        """Every value by name, sub-tables as dicts (what pydantic's model_dump gave when these were models)."""
        return {name: value.model_dump() if isinstance(value := getattr(self, name), _Section)
                else copy.deepcopy(value) for name in self.names()}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.model_dump().items())})"


class GenerationSettings(_Section):
    """`[generation]`: the defaults of generate and chat (the CLI's and the dashboard's) when a request
    names none."""

    max_tokens: Annotated[int, Field(ge=1, description="most tokens an answer gets, 1 or more")] = 512
    temperature: Annotated[float, Field(
        ge=0, le=2, description="sampling temperature, from 0 (greedy) to 2")] = 0.7
    top_p: Annotated[float, Field(
        ge=0, le=1, description="nucleus sampling's probability mass, from 0 to 1")] = 0.95


class ServerSettings(_Section):
    """`[server]`: who the server answers, its limits, and how it runs models. `xitui serve` and
    `python -m xitui.server` hand this one object to the app and its supervisor."""

    allowed_hosts: Annotated[list[str], Env("XITUI_ALLOWED_HOSTS"), Field(
        description="host names the server answers besides loopback ones (* for any)")] = []
    allowed_origins: Annotated[list[str], Env("XITUI_ALLOWED_ORIGINS"), AfterValidator(_origins_as_browsers_send_them),
                               Field(description="origins whose web pages may call the server, as a browser "
                                                 "sends them (http://localhost:3000; * for any)")] = []
    max_body_mib: Annotated[int, Field(
        ge=1, description="largest request body the server reads, in MiB: at least 1")] = DEFAULT_MAX_BODY_MIB
    ttl: Annotated[str, BeforeValidator(_seconds_are_a_ttl), AfterValidator(_ttl_is_a_duration), Field(
        description="how long a model may stay idle when its launch names no ttl (never, 90, 30s, 10m, 1h30m)")
    ] = "never"
    n_parallel: Annotated[int, Field(
        ge=0, le=64, description="slots of a llama.cpp model whose launch names none: from 1 to 64 "
                                 "(0: from the machine, the default)")] = 0
    speculative: Annotated[Literal["ngram", "off"], Field(
        description="speculative decoding of a llama.cpp model's greedy answers when its launch names none: "
                    "ngram (drafts looked up in the prompt and the answer) or off")] = "off"
    warm: Annotated[list[str], Env("XITUI_WARM"), AfterValidator(_warm_names_engines), Field(
        description="engines a warm worker imports ahead of launches: all, none, or some of "
                    + ", ".join(WARM_ENGINES))] = ["all"]
    allow_other_users: Annotated[bool, Field(
        description="other users of this machine may use the server (without an API key)")] = False
    allowed_envs: Annotated[list[str], Field(
        description="environment variables a launch's envs may set besides the builtin allow-list")] = []
    autoload: Annotated[bool, Field(
        description="a request naming a registered model that is not running launches it")] = True
    max_loaded: Annotated[int, Field(
        ge=0, description="models running at once before a load on request unloads the least recently used "
                          "idle one, 0 or more (0: no limit)")] = 0
    max_loading: Annotated[int, Field(
        ge=0, description="loads on request at once, 0 or more (0: no limit)")] = DEFAULT_MAX_LOADING
    max_restarts: Annotated[int, Field(
        ge=0, description="restarts per hour, 0 or more, a model's workers get after dying on their own "
                          "(0: a worker that dies is not restarted)")] = DEFAULT_MAX_RESTARTS
    image_urls: Annotated[Literal["off", "public", "any"], Field(
        description="http(s) image URLs in chat requests: off (data: URLs only), public (fetched from public "
                    "internet hosts only), any (from private networks and this machine too)")] = "off"

    @property
    def ttl_seconds(self) -> float | None:
        """The idle time to live of a launch that names none, in seconds; None: never unloaded."""
        from xitui.core.units import parse_duration

        return parse_duration(self.ttl)

    @property
    def warm_engines(self) -> list[str]:
        """The engines the warm worker imports, in WARM_ENGINES' order."""
        return _engines(self.warm)


class ChatsSettings(_Section):
    """`[chats]`: saved conversations (xitui/core/saved_chats.py)."""

    save: Annotated[bool, Field(description="keep conversations to pick up later (false keeps none)")] = True


class Settings(_Section):
    """The user's settings: config.toml over the defaults, with XITUI_* variables over both."""

    endpoint: Annotated[str, Env("XITUI_ENDPOINT"), AfterValidator(_endpoint_is_a_url), Field(
        description="the server commands talk to (http:// or https://)")] = DEFAULT_ENDPOINT
    api_key: Annotated[str | None, Env("XITUI_API_KEY"), Field(
        description="sent as 'Authorization: Bearer KEY'; a server started here demands it")] = None
    theme: Annotated[str, Field(description="the dashboard's theme (dark, light, high-contrast, or your own)")
                     ] = "dark"
    niceness: Annotated[int, Field(
        ge=0, le=19, description="from 0 (views run as the models do) to 19 (views yield the most): how much "
                                 "lower than the model workers the dashboard and a chat on a terminal run")] = 10
    generation: GenerationSettings = GenerationSettings()
    server: ServerSettings = ServerSettings()
    chats: ChatsSettings = ChatsSettings()
    #: Dashboard key rebinding, binding id -> keys ("launch" = "L"), from the file's [keymap] table.
    keymap: dict[str, str] = {}

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        #: Which source each value came from ("file" or "env"; absent: the default), for `xitui config show`.
        self._sources: dict[str, str] = {}

    @property
    def sources(self) -> dict[str, str]:
        return self._sources

    def flat(self) -> dict[str, Any]:
        """Every setting by its key (`server.ttl`), in declaration order."""
        return {key: getattr(getattr(self, section) if section else self, name)
                for key, (section, name) in _keys().items()}


_MODELS: dict[type[_Section], type[BaseModel]] = {}


def _model(section: type[_Section]) -> type[BaseModel]:
    """The pydantic model that checks values for `section`, built from its declaration when a value is first
    checked. Strict: TOML has types, so a string where a number belongs is an error, not a guess; a key no
    setting has is an error too (a typo would otherwise do nothing)."""
    if section in _MODELS:
        return _MODELS[section]
    from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, create_model

    names = {**globals(), "AfterValidator": AfterValidator, "BeforeValidator": BeforeValidator, "Field": Field}
    hints = get_type_hints(section, names, include_extras=True)
    fields: dict[str, Any] = {}
    for name in section.names():
        default = getattr(section, name)
        if isinstance(default, _Section):
            table = _model(type(default))
            fields[name] = (table, Field(default_factory=table))
        else:
            fields[name] = (hints[name], default)
    _MODELS[section] = create_model(section.__name__, __config__=ConfigDict(strict=True, extra="forbid"), **fields)
    return _MODELS[section]


@cache
def _keys() -> dict[str, tuple[str, str]]:
    """Every setting `xitui config set` changes, by key: (its section or "", its name)."""
    found: dict[str, tuple[str, str]] = {}
    for name in Settings.names():
        default = getattr(Settings, name)
        if isinstance(default, _Section):
            found.update({f"{name}.{inner}": (name, inner) for inner in type(default).names()})
        elif name != "keymap":
            found[name] = ("", name)
    return found


@cache
def _fields() -> dict[str, tuple[str, str, FieldInfo]]:
    """_keys() with each setting's pydantic field (its type, default, description, Env): builds the models."""
    return {key: (section, name, _model(type(getattr(Settings, section)) if section else Settings).model_fields[name])
            for key, (section, name) in _keys().items()}


#: The settings by key, as `xitui config show` lists them and `xitui config set` takes them: (section or "",
#: name, pydantic field). Built on first use (by __getattr__ below), since that imports pydantic.
SETTINGS: dict[str, tuple[str, str, FieldInfo]]


def __getattr__(name: str) -> Any:
    if name == "SETTINGS":
        return _fields()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@cache
def _env_names() -> dict[str, str]:
    """The variable each setting's Env names, by key. Read from the annotation's text, which is what the
    class keeps (`from __future__ import annotations`): evaluating it would import pydantic for Field."""
    found: dict[str, str] = {}
    for key, (section, name) in _keys().items():
        text = type(getattr(Settings, section)).__annotations__[name] if section else Settings.__annotations__[name]
        for node in ast.walk(ast.parse(text, mode="eval")) if "Env(" in text else ():
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == Env.__name__:
                found[key] = ast.literal_eval(node.args[0])
    return found


def env_name(key: str) -> str | None:
    """The environment variable that overrides setting `key`, if one does."""
    return _env_names().get(key)


TextKind = Literal["str", "int", "float", "bool", "list"]


def _kind(field: FieldInfo) -> TextKind:
    """What a setting's value is when it is written as text (in a variable, after `config set`)."""
    annotation = field.annotation
    if get_origin(annotation) is list:
        return "list"
    if get_origin(annotation) in (Union, UnionType):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    kinds: dict[Any, TextKind] = {int: "int", float: "float", bool: "bool"}
    return kinds.get(annotation, "str")


def _from_text(key: str, raw: str) -> Any:
    """A setting written as text, as its type; a list is comma-separated."""
    kind = _kind(_fields()[key][2])
    try:
        if kind == "bool":
            return _boolean(raw)
        if kind == "list":
            return split_list(raw)
        return {"int": int, "float": float}.get(kind, str)(raw)
    except ValueError:
        raise ConfigError(f"{key}: {raw!r} is not a valid {kind}") from None


def _boolean(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("true", "yes", "on", "1"):
        return True
    if lowered in ("false", "no", "off", "0"):
        return False
    raise ValueError(raw)


# --- reading and writing ---------------------------------------------------------------------------


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


def _read_file(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    try:
        return tomllib.loads(path.read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None


_TYPE_NAMES = {"int_type": "int", "int_parsing": "int", "float_type": "float", "float_parsing": "float",
               "bool_type": "bool", "bool_parsing": "bool", "string_type": "str", "list_type": "list of strings",
               "model_type": "table", "dict_type": "table"}


def _problem(error: Any) -> tuple[str, str]:
    """One pydantic error as (the setting's key, what is wrong with its value)."""
    loc = [str(part) for part in error["loc"]]
    kind = error["type"]
    # a list's item is told as its list: server.warm, not server.warm.0
    key = ".".join(part for part in loc if not part.isdigit())
    value = error.get("input")
    if kind == "extra_forbidden":
        return key, "not a setting (`xitui config show` lists them)"
    if kind in _TYPE_NAMES:
        return key, f"{value!r} is not a valid {_TYPE_NAMES[kind]}"
    if kind == "value_error":
        return key, str(error["ctx"]["error"])
    field = _fields().get(key)
    rule = field[2].description if field and field[2].description else error["msg"].lower()
    return key, f"{rule}, not {value!r}"


def _validated(data: dict[str, Any], where: dict[str, str], default_where: str) -> Settings:
    """`data` as Settings; each problem names its key, after where its value came from (a file, a
    variable, or nothing for `config set`'s own value)."""
    from pydantic import ValidationError

    try:
        checked = _model(Settings).model_validate(data)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            key, problem = _problem(error)
            origin = where.get(key, default_where)
            lines.append(f"{origin}: {key}: {problem}" if origin else f"{key}: {problem}")
        raise ConfigError("; ".join(lines)) from None
    return Settings(**checked.model_dump())


def _put(data: dict[str, Any], key: str, value: Any) -> None:
    section, _, name = key.rpartition(".")
    target = data.setdefault(section, {}) if section else data
    if not isinstance(target, dict):
        raise ConfigError(f"{config_path()}: {section}: {target!r} is not a valid table")
    target[name] = value


def load_config() -> Settings:
    """The settings: defaults, then the config file, then environment variables. A value any of them
    gets wrong is a ConfigError naming the key and where the value came from. With no file and no setting's
    variable set (an empty one counts as unset), there is nothing to check: the declared defaults, as they
    are, without importing pydantic."""
    path = config_path()
    overrides = {key: env for key, env in _env_names().items() if os.environ.get(env)}
    if not overrides and not path.exists():
        return Settings()
    data = _read_file(path)
    settings = _validated(data, {}, str(path))
    sources = {key: "file" for key, (section, name) in _keys().items()
               if name in (data.get(section, {}) if section else data)}
    if overrides:
        merged = settings.model_dump()
        for key, env in overrides.items():
            try:
                _put(merged, key, _from_text(key, os.environ[env]))
            except ConfigError as exc:
                raise ConfigError(f"{env}: {exc}") from None
        settings = _validated(merged, overrides, str(path))
        sources.update({key: "env" for key in overrides})
    settings._sources = sources
    return settings


def set_value(key: str, raw: str) -> Any:
    """Write one setting to the config file (atomically) once the whole file with it validates; returns
    the typed value."""
    if key not in _keys():
        raise ConfigError(f"unknown setting {key!r} (known: {', '.join(_keys())})")
    value = _from_text(key, raw)
    path = config_path()
    data = _read_file(path)
    _put(data, key, value)
    _validated(data, {key: ""}, str(path))
    import tomli_w

    from xitui.core.files import atomic_write

    atomic_write(path, tomli_w.dumps(data).encode("utf-8"))
    return value
