"""Operator bounds on what a manifest asks for itself (DESIGN 2.3), and unique names.

Regressions (issue 10): ``critical: true`` let any plugin stop the bot by crash-looping;
``stop_timeout_s: 86400`` held the bot's shutdown hostage; limits were accepted as written
(1 TB, 102400 % CPU); a folder that sorted first and declared another plugin's name won.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rosey.config import BotConfig, LimitsMax, load_config
from rosey.errors import ConfigError
from rosey.plugins.bounds import bound
from rosey.plugins.discovery import discover
from rosey.protocol.manifest import Manifest

BASE = {"name": "dice", "version": "1.0.0", "entrypoint": "dice:DicePlugin"}
CAPS = LimitsMax().model_dump()


def manifest(**fields: Any) -> Manifest:
    return Manifest.model_validate({**BASE, **fields})


def test_documented_defaults() -> None:
    assert CAPS == {
        "memory_mb": 1024,
        "cpu_percent": 100,
        "max_processes": 64,
        "open_files": 1024,
        "data_mb": 1024,
        "stop_timeout_s": 30,
        "start_timeout_s": 60,
    }
    assert manifest().limits.data_mb == 100


@pytest.mark.parametrize(
    ("asked", "effective", "notes"),
    [
        ({}, {}, []),
        (
            {"limits": {"memory_mb": 1024 * 1024}},
            {"memory_mb": 1024},
            ["limits.memory_mb capped from 1048576 to 1024 by limits_max"],
        ),
        (
            {"limits": {"cpu_percent": 102400}},
            {"cpu_percent": 100},
            ["limits.cpu_percent capped from 102400 to 100 by limits_max"],
        ),
        (
            {"limits": {"open_files": 25000, "max_processes": 4096, "data_mb": 1024 * 1024}},
            {"open_files": 1024, "max_processes": 64, "data_mb": 1024},
            [
                "limits.max_processes capped from 4096 to 64 by limits_max",
                "limits.open_files capped from 25000 to 1024 by limits_max",
                "limits.data_mb capped from 1048576 to 1024 by limits_max",
            ],
        ),
        (
            {"stop_timeout_s": 86400},
            {"stop_timeout_s": 30.0},
            ["stop_timeout_s capped from 86400 to 30 by limits_max"],
        ),
        (
            {"health": {"start_timeout_s": 86400}},
            {"health.start_timeout_s": 60.0},
            ["health.start_timeout_s capped from 86400 to 60 by limits_max"],
        ),
        (
            {"stop_timeout_s": 45.5, "health": {"start_timeout_s": 60.5}},
            {"stop_timeout_s": 30.0, "health.start_timeout_s": 60.0},
            [
                "stop_timeout_s capped from 45.5 to 30 by limits_max",
                "health.start_timeout_s capped from 60.5 to 60 by limits_max",
            ],
        ),
        # At the cap exactly: nothing changes, nothing to say.
        ({"limits": {"memory_mb": 1024}, "stop_timeout_s": 30}, {"memory_mb": 1024}, []),
    ],
)
def test_limits_and_stop_timeout_are_capped(
    asked: dict[str, Any], effective: dict[str, Any], notes: list[str]
) -> None:
    result = bound(manifest(**asked), CAPS, operator_critical=None)
    for field, value in effective.items():
        where: object = result.manifest.limits
        if field == "stop_timeout_s":
            where = result.manifest
        elif field.startswith("health."):
            where = result.manifest.health
        assert getattr(where, field.rpartition(".")[2]) == value, field
    assert list(result.notes) == notes


def test_lower_operator_caps_cap_the_defaults_too() -> None:
    caps = {**CAPS, "memory_mb": 128, "data_mb": 10}
    result = bound(manifest(), caps, operator_critical=None)
    assert (result.manifest.limits.memory_mb, result.manifest.limits.data_mb) == (128, 10)
    assert len(result.notes) == 2


@pytest.mark.parametrize(
    ("in_manifest", "operator", "critical", "noted"),
    [
        (False, None, False, False),
        (True, None, False, True),  # the manifest alone: ignored, and said so
        (True, True, True, False),
        (True, False, False, False),  # the operator said no: nothing to explain
        (False, True, True, False),  # the operator decides
        (False, False, False, False),
    ],
)
def test_critical_only_when_the_operator_says_so(
    in_manifest: bool, operator: bool | None, critical: bool, noted: bool
) -> None:
    result = bound(manifest(critical=in_manifest), CAPS, operator_critical=operator)
    assert result.manifest.critical is critical
    assert any("critical: true in the manifest is ignored" in n for n in result.notes) is noted
    if noted:
        assert "plugins.dice.critical: true" in result.notes[0]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ("{limits: {memory_mb: 2048}}", "plugins.dice.limits.memory_mb"),
        ("{limits: {cpu_percent: 400}}", "plugins.dice.limits.cpu_percent"),
        ("{limits: {data_mb: 5000}}", "plugins.dice.limits.data_mb"),
        ("{stop_timeout_s: 60}", "plugins.dice.stop_timeout_s"),
        ("{health: {start_timeout_s: 600}}", "plugins.dice.health.start_timeout_s"),
    ],
)
def test_an_operator_entry_above_limits_max_is_a_config_error(
    tmp_path: Path, entry: str, field: str
) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(f"plugins:\n  dice: {entry}\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.field == field
    assert "above limits_max" in str(info.value)
    assert "allowed: at most" in str(info.value)


def test_an_operator_may_raise_limits_max_and_use_it(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(
        "limits_max: {memory_mb: 4096}\nplugins:\n  dice: {limits: {memory_mb: 2048}}\n"
    )
    config = load_config(path, environ={})
    result = bound(config.apply(manifest()), config.limits_max.model_dump(), operator_critical=None)
    assert result.manifest.limits.memory_mb == 2048
    assert result.notes == ()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("limits_max: {memory_mb: 0}", "limits_max.memory_mb"),
        ("limits_max: {open_files: 99999999}", "limits_max.open_files"),
        ("limits_max: {swap: 1}", "limits_max.swap"),
        ("plugins: {dice: {limits: {memory_mb: -5}}}", "plugins.dice.limits.memory_mb"),
        ("plugins: {dice: {stop_timeout_s: 0}}", "plugins.dice.stop_timeout_s"),
    ],
)
def test_bad_bounds_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.field == field


def _plugin(root: Path, folder: str, name: str, *, valid: bool = True) -> Path:
    path = root / folder
    path.mkdir(parents=True)
    entry = "m:P" if valid else "not an entrypoint"
    (path / "plugin.yaml").write_text(f"name: {name}\nversion: 1.0.0\nentrypoint: {entry}\n")
    (path / "m.py").write_text("class P: ...\n")
    return path


@pytest.mark.parametrize(
    ("layout", "running", "duplicates"),
    [
        ({"a": "dice", "b": "other"}, ["dice", "other"], {}),
        ({"a": "dice", "b": "dice"}, [], {"dice": ["a", "b"]}),
        ({"a": "dice", "z": "dice", "m": "other"}, ["other"], {"dice": ["a", "z"]}),
        ({"a": "dice", "b": "dice", "c": "dice"}, [], {"dice": ["a", "b", "c"]}),
    ],
)
def test_a_name_declared_twice_runs_under_neither(
    tmp_path: Path, layout: dict[str, str], running: list[str], duplicates: dict[str, list[str]]
) -> None:
    for folder, name in layout.items():
        _plugin(tmp_path, folder, name)
    found = discover([tmp_path])
    assert sorted(found.plugins) == running
    assert {n: [f.name for f in fs] for n, fs in found.duplicates.items()} == duplicates
    for name, folders in duplicates.items():
        errors = [p for p in found.problems if p.field == "name"]
        assert sorted(Path(p.file).parent.name for p in errors) == folders
        for error in errors:  # each error names every folder
            assert all(str(tmp_path / f) in str(error) for f in folders), error
            assert f"plugin name {name!r} is declared by {len(folders)} folders" in str(error)


def test_an_invalid_manifest_declaring_the_name_still_counts(tmp_path: Path) -> None:
    """Breaking the genuine manifest must not let an impostor have its name."""
    _plugin(tmp_path, "a_impostor", "dice")
    _plugin(tmp_path, "b_dice", "dice", valid=False)
    found = discover([tmp_path])
    assert found.plugins == {}
    assert "dice" in found.duplicates


def test_the_same_folder_reached_twice_is_not_a_duplicate(tmp_path: Path) -> None:
    folder = _plugin(tmp_path, "dice", "dice")
    found = discover([tmp_path, folder, folder / "plugin.yaml"])
    assert sorted(found.plugins) == ["dice"]
    assert found.problems == []


def test_config_bounds_are_part_of_the_config() -> None:
    assert BotConfig().limits_max == LimitsMax()
