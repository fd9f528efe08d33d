"""Settings: defaults, the TOML file, environment overrides, and `set`."""

from __future__ import annotations

import pytest

from xitui.core.config import DEFAULT_ENDPOINT, ConfigError, config_path, load_config, set_value


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
    assert cfg.generation["temperature"] == 0.2
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
