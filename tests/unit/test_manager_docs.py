"""The operator's guide (docs/plugins/PLUGIN-MANAGEMENT.md) stays true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from rosey.config import BackoffSettings, BotConfig, ErrorRateSettings
from rosey.lifecycle.states import render_mermaid
from rosey.manager.status import STATUS_KEYS

GUIDE = Path(__file__).resolve().parents[2] / "docs" / "plugins" / "PLUGIN-MANAGEMENT.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", GUIDE.read_text(encoding="utf-8"), re.S)


def test_the_state_diagram_is_the_one_generated_from_the_table() -> None:
    assert blocks("mermaid") == [render_mermaid()]


def test_the_documented_configuration_is_valid_and_its_defaults_are_the_real_ones() -> None:
    documented = [yaml.safe_load(text) for text in blocks("yaml")]
    backoff, full = documented
    assert BackoffSettings.model_validate(backoff["backoff"]) == BackoffSettings()
    config = BotConfig.model_validate(full)
    assert config.backoff == BackoffSettings()
    assert config.error_rate == ErrorRateSettings()
    default = BotConfig()
    for key in ("max_crash_count", "crash_window_s", "health_check_interval", "state_dir"):
        assert getattr(config, key) == getattr(default, key), key


def test_every_status_field_is_explained() -> None:
    text = GUIDE.read_text(encoding="utf-8")
    for key in STATUS_KEYS:
        if key not in ("name", "version"):
            assert f"`{key}`" in text, key
