"""CyTube connector settings: secrets as env:VAR or file:PATH, never inline or shown."""

from __future__ import annotations

from pathlib import Path

import pytest

from rosey.connectors.cytube.settings import CytubeSettings, resolve_secret
from rosey.errors import ConfigError


def test_secrets_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ROSEY_TEST_PW", "s3cret")
    assert resolve_secret("env:ROSEY_TEST_PW", source="c", field="password") == "s3cret"
    secret = tmp_path / "pw"
    secret.write_text("from-file\nignored\n")
    assert resolve_secret(f"file:{secret}", source="c", field="password") == "from-file"
    assert resolve_secret(None, source="c", field="password") is None


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("hunter2", "env:VARIABLE or file:"),
        ("env:", "env:VARIABLE or file:"),
        ("env:ROSEY_TEST_UNSET_VARIABLE", "is not set"),
        ("file:/nonexistent/rosey/pw", "cannot read"),
    ],
)
def test_bad_secrets_say_what_is_allowed(value: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        resolve_secret(value, source="connector cytube", field="password")
    assert caught.value.field == "password"
    assert "hunter2" not in str(caught.value)


def test_settings_check_their_fields_and_hide_secrets() -> None:
    settings = CytubeSettings(
        server="https://cytu.be",
        channel="MyChan",
        username="Rosey",
        password="pw1",
        channel_password="pw2",
    )
    assert settings.channel_key == "mychan"
    assert "pw1" not in repr(settings)
    assert "pw2" not in repr(settings)
    with pytest.raises(ConfigError, match="channel"):
        CytubeSettings(server="https://cytu.be", channel="no spaces", username="r")
    with pytest.raises(ConfigError, match="server"):
        CytubeSettings(server="cytu.be", channel="c", username="r")
    with pytest.raises(ConfigError, match="username"):
        CytubeSettings(server="https://cytu.be", channel="c", username="")
