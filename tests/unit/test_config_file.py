"""The shipped config/plugins.yaml documents the defaults: loading it changes nothing."""

from __future__ import annotations

from pathlib import Path

from rosey.config import BotConfig, load_config

CONFIG = Path(__file__).resolve().parents[2] / "config" / "plugins.yaml"


def test_shipped_config_equals_the_defaults() -> None:
    loaded = load_config(CONFIG, environ={})
    assert loaded == BotConfig()
    # It must not set health_check_interval: that would override every manifest's interval.
    assert "health_check_interval" not in loaded.model_fields_set
    assert set(BotConfig.model_fields) - {"health_check_interval"} <= set(loaded.model_fields_set)
