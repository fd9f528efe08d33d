"""Settings: defaults, the TOML file, environment overrides, and `set`."""

from __future__ import annotations

import re

import pytest

from xitui.core.config import (
    DEFAULT_ENDPOINT,
    SETTINGS,
    WARM_ENGINES,
    ConfigError,
    Env,
    ServerSettings,
    Settings,
    config_path,
    env_name,
    load_config,
    set_value,
)


def test_defaults_file_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load_config()
    assert cfg.endpoint == DEFAULT_ENDPOINT and cfg.api_key is None
    assert cfg.niceness == 10  # views run 10 nice steps below the models unless told otherwise
    set_value("niceness", "0")
    assert load_config().niceness == 0
    set_value("endpoint", "http://10.0.0.5:9997")
    set_value("generation.temperature", "0.2")
    cfg = load_config()
    assert cfg.endpoint == "http://10.0.0.5:9997" and cfg.sources["endpoint"] == "file"
    assert cfg.generation.temperature == 0.2
    assert 'endpoint = "http://10.0.0.5:9997"' in config_path().read_text()
    monkeypatch.setenv("XITUI_ENDPOINT", "http://127.0.0.1:1234")
    monkeypatch.setenv("XITUI_API_KEY", "secret")
    cfg = load_config()
    assert cfg.endpoint == "http://127.0.0.1:1234" and cfg.sources["endpoint"] == "env"
    assert cfg.api_key == "secret"


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("colour", "red", "unknown setting 'colour'"),
        ("generation.max_tokens", "lots", "generation.max_tokens: 'lots' is not a valid int"),
        ("endpoint", "localhost:9997", "endpoint: must start with http"),
        ("niceness", "20", "niceness: from 0"),
        ("niceness", "-5", "niceness: from 0"),
    ],
)
def test_bad_settings_are_refused(key: str, value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        set_value(key, value)
    assert not config_path().exists()


def test_broken_config_file_is_a_clear_error() -> None:
    config_path().write_text("endpoint = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config()


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ('niceness = "ten"\n', "niceness: 'ten' is not a valid int"),
        ("[server]\nautoload = 1\n", "server.autoload: 1 is not a valid bool"),
        ('[server]\nmax_loaded = "2"\n', "server.max_loaded: '2' is not a valid int"),
        ("[server]\nwarm = [\"llama.cpp\", 3]\n", "server.warm: 3 is not a valid str"),
        ("[generation]\ntemperature = true\n", "generation.temperature: True is not a valid float"),
        ("server = 5\n", "server: 5 is not a valid table"),
        ("[keymap]\nlaunch = 5\n", "keymap.launch: 5 is not a valid str"),
        ("[server]\nmax_load = 2\n", "server.max_load: not a setting"),
        ("colour = \"red\"\n", "colour: not a setting"),
        ('endpoint = "localhost:9997"\n', "endpoint: must start with http"),
        ('[server]\nttl = "soon"\n', "server.ttl: 'soon' is not a duration"),
        ('[server]\nwarm = ["vllm"]\n', "server.warm: vllm is not an engine"),
        ('[server]\nallowed_origins = ["localhost:3000"]\n', "server.allowed_origins: allowed origin 'localhost:3000'"),
    ],
)
def test_a_bad_value_in_the_file_is_an_error_naming_the_key(toml: str, problem: str) -> None:
    """Once dropped in silence (the default served instead): now one line with the file and the key."""
    config_path().write_text(toml)
    with pytest.raises(ConfigError) as caught:
        load_config()
    message = str(caught.value)
    assert message.startswith(f"{config_path()}: ") and problem in message and "\n" not in message


@pytest.mark.parametrize(
    ("key", "value", "problem"),
    [
        ("niceness", "20", "niceness: from 0 (views run as the models do) to 19"),
        ("niceness", "-1", "niceness: from 0"),
        ("server.n_parallel", "65", "server.n_parallel: slots of a llama.cpp model whose launch names none: "
                                    "from 1 to 64 (0: from the machine, the default), not 65"),
        ("server.max_body_mib", "0", "server.max_body_mib: largest request body the server reads, in MiB: "
                                     "at least 1, not 0"),
        ("server.max_loading", "-1", "server.max_loading: loads on request at once, 0 or more"),
        ("server.max_loaded", "-3", "server.max_loaded: models running at once"),
        ("server.max_restarts", "-1", "server.max_restarts: restarts per hour, 0 or more"),
        ("generation.temperature", "2.5", "generation.temperature: sampling temperature, from 0 (greedy) to 2"),
        ("generation.top_p", "1.5", "generation.top_p: nucleus sampling's probability mass, from 0 to 1"),
        ("generation.max_tokens", "0", "generation.max_tokens: most tokens an answer gets, 1 or more"),
    ],
)
def test_out_of_range_values_are_refused_from_the_file_and_from_set(key: str, value: str, problem: str) -> None:
    section, _, name = key.rpartition(".")
    config_path().write_text((f"[{section}]\n" if section else "") + f"{name} = {value}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{config_path()}: {problem}")):
        load_config()
    config_path().unlink()
    with pytest.raises(ConfigError, match=f"^{re.escape(problem)}"):
        set_value(key, value)
    assert not config_path().exists()


def test_several_problems_are_one_line_each_named() -> None:
    config_path().write_text('niceness = 99\n[server]\nttl = "soon"\nautoload = "yes"\n')
    with pytest.raises(ConfigError) as caught:
        load_config()
    problems = str(caught.value).split("; ")
    assert [p.split(": ")[1] for p in problems] == ["niceness", "server.ttl", "server.autoload"]


def test_every_type_of_the_file_reads_and_seconds_are_a_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XITUI_WARM", raising=False)  # tests/conftest.py's, over the file's
    config_path().write_text('theme = "light"\nniceness = 0\n[generation]\ntemperature = 0\n'
                             '[server]\nttl = 600\nwarm = ["none"]\nallowed_hosts = ["lab.example"]\n'
                             'autoload = false\n[chats]\nsave = false\n[keymap]\nlaunch = "L"\n')
    cfg = load_config()
    assert cfg.generation.temperature == 0.0 and isinstance(cfg.generation.temperature, float)
    assert cfg.server.ttl_seconds == 600 and cfg.server.warm_engines == [] and not cfg.server.autoload
    assert cfg.server.allowed_hosts == ["lab.example"] and not cfg.chats.save and cfg.keymap == {"launch": "L"}
    assert cfg.sources["server.ttl"] == "file" and "server.max_loaded" not in cfg.sources
    assert cfg.flat()["server.ttl"] == "600" and "keymap" not in cfg.flat()


def test_the_environment_wins_over_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    config_path().write_text('endpoint = "http://10.0.0.5:9997"\n[server]\nwarm = ["transformers"]\n'
                             'allowed_origins = ["http://a.example"]\n')
    monkeypatch.setenv("XITUI_ENDPOINT", "http://127.0.0.1:1234")
    monkeypatch.setenv("XITUI_WARM", "llama.cpp, sentence_transformers")
    monkeypatch.setenv("XITUI_ALLOWED_HOSTS", "a.example,b.example")
    monkeypatch.setenv("XITUI_ALLOWED_ORIGINS", "")  # empty: unset, the file's stands
    cfg = load_config()
    assert cfg.endpoint == "http://127.0.0.1:1234" and cfg.sources["endpoint"] == "env"
    assert cfg.server.warm_engines == ["llama.cpp", "sentence_transformers"] and cfg.sources["server.warm"] == "env"
    assert cfg.server.allowed_hosts == ["a.example", "b.example"]
    assert cfg.server.allowed_origins == ["http://a.example"] and cfg.sources["server.allowed_origins"] == "file"
    assert {key: env_name(key) for key in SETTINGS if env_name(key)} == {
        "endpoint": "XITUI_ENDPOINT", "api_key": "XITUI_API_KEY", "server.allowed_hosts": "XITUI_ALLOWED_HOSTS",
        "server.allowed_origins": "XITUI_ALLOWED_ORIGINS", "server.warm": "XITUI_WARM"}


@pytest.mark.parametrize(
    ("env", "value", "problem"),
    [
        ("XITUI_WARM", "vllm", "XITUI_WARM: server.warm: vllm is not an engine"),
        ("XITUI_ENDPOINT", "localhost:1", "XITUI_ENDPOINT: endpoint: must start with http"),
        ("XITUI_ALLOWED_ORIGINS", "http://a.example/app", "XITUI_ALLOWED_ORIGINS: server.allowed_origins: allowed"),
    ],
)
def test_a_bad_variable_is_an_error_naming_it(monkeypatch: pytest.MonkeyPatch, env: str, value: str,
                                              problem: str) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config()


@pytest.mark.parametrize(
    ("key", "raw", "typed"),
    [
        ("server.allowed_hosts", "a.example, b.example", ["a.example", "b.example"]),
        ("server.autoload", "off", False),
        ("server.allow_other_users", "yes", True),
        ("server.ttl", "1h30m", "1h30m"),
        ("server.warm", "none", ["none"]),
        ("generation.temperature", "0", 0.0),
        ("generation.max_tokens", "64", 64),
        ("chats.save", "false", False),
        ("api_key", "secret", "secret"),
    ],
)
def test_config_set_round_trips(monkeypatch: pytest.MonkeyPatch, key: str, raw: str, typed: object) -> None:
    """`config set` writes what the file reads back as the same value, beside what was there."""
    monkeypatch.delenv("XITUI_WARM", raising=False)  # tests/conftest.py's, over the file's
    config_path().write_text('theme = "light"\n[keymap]\nlaunch = "L"\n')
    assert set_value(key, raw) == typed
    cfg = load_config()
    assert cfg.flat()[key] == typed and cfg.sources[key] == "file"
    assert cfg.theme == "light" and cfg.keymap == {"launch": "L"}


def test_config_set_refuses_a_value_the_file_would_refuse_and_names_a_broken_file() -> None:
    with pytest.raises(ConfigError, match="server.warm: vllm is not an engine"):
        set_value("server.warm", "llama.cpp,vllm")
    with pytest.raises(ConfigError, match="^server.autoload: 'maybe' is not a valid bool$"):
        set_value("server.autoload", "maybe")
    config_path().write_text("niceness = 99\n")
    with pytest.raises(ConfigError, match=re.escape(f"{config_path()}: niceness: from 0")):
        set_value("theme", "light")
    set_value("niceness", "3")  # setting the broken key itself mends the file
    assert load_config().niceness == 3


def test_nothing_configured_is_the_declared_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """No file and no setting's variable: nothing to check, so load_config takes the declared defaults as
    they are (without pydantic, tests/cli/test_startup.py); they are what the models make of an empty file."""
    monkeypatch.delenv("XITUI_WARM", raising=False)  # tests/conftest.py's
    monkeypatch.setenv("XITUI_ENDPOINT", "")  # empty: unset
    cfg = load_config()
    assert cfg.flat() == {key: field.get_default(call_default_factory=True) for key, (_s, _n, field) in SETTINGS.items()}
    assert cfg.sources == {} and cfg.keymap == {} and cfg.server.warm_engines == list(WARM_ENGINES)
    config_path().write_text("")
    assert load_config().model_dump() == cfg.model_dump()


def test_settings_share_no_default() -> None:
    first = Settings()
    first.server.allowed_hosts.append("lab.example")
    first.keymap["launch"] = "L"
    assert Settings().server.allowed_hosts == [] and Settings().keymap == {} and ServerSettings().allowed_hosts == []


def test_the_variables_read_from_the_annotations_are_the_ones_the_models_see() -> None:
    """env_name reads each Env from its annotation's text (evaluating it would import pydantic): the same
    variables as the models' fields carry."""
    assert {key: env_name(key) for key in SETTINGS} == {
        key: next((m.name for m in field.metadata if isinstance(m, Env)), None)
        for key, (_section, _name, field) in SETTINGS.items()}
