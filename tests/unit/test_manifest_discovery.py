"""Manifests, discovery and bot config: every error names the file and field and what is allowed."""

from __future__ import annotations

from pathlib import Path

import pytest

from rosey.config import BotConfig, PluginOverride, load_config
from rosey.errors import ConfigError
from rosey.plugins.discovery import discover
from rosey.protocol.manifest import Manifest, manifest_problems

GOOD = {"name": "dice", "version": "1.0.0", "entrypoint": "dice:DicePlugin"}


def make_plugin(root: Path, folder: str, manifest: str, module: str = "", code: str = "") -> Path:
    path = root / folder
    path.mkdir(parents=True)
    (path / "plugin.yaml").write_text(manifest)
    if module:
        (path / module).write_text(code or "class P:\n    pass\n")
    return path


def test_defaults_are_those_of_the_design() -> None:
    m = Manifest.model_validate(GOOD)
    assert m.restart_policy == "on-failure"
    assert m.critical is False
    assert (
        m.limits.memory_mb,
        m.limits.cpu_percent,
        m.limits.max_processes,
        m.limits.open_files,
    ) == (
        256,
        50,
        32,
        256,
    )
    assert (m.health.interval_s, m.health.timeout_s, m.health.failure_threshold) == (10, 2, 3)
    assert m.health.start_timeout_s == 15
    assert m.stop_timeout_s == 5
    assert m.config == {}


@pytest.mark.parametrize(
    ("change", "field", "allowed"),
    [
        ({"name": "Dice"}, "name", "a lowercase name"),
        ({"name": "a" * 33}, "name", "a lowercase name"),
        ({"version": "1.0"}, "version", "semantic version"),
        ({"entrypoint": "dice"}, "entrypoint", "'module:Class'"),
        ({"restart_policy": "sometimes"}, "restart_policy", "'always', 'on-failure' or 'never'"),
        ({"permissions": ["root"]}, "permissions.0", "plugins.call:<name>"),
        ({"limits": {"memory": 5}}, "limits.memory", "memory_mb, cpu_percent"),
        ({"health": {"interval_s": 0}}, "health.interval_s", "expected a number above 0"),
        ({"stop_timeout_s": "soon"}, "stop_timeout_s", "'soon' is not allowed; expected a number"),
        ({"limits": {"memory_mb": 8}}, "limits.memory_mb", "a whole number from 16 to 1048576"),
        ({"commands": ["roll", "roll"]}, "commands", "listed twice"),
        ({"colour": "red"}, "colour", "allowed keys here: name, version"),
    ],
)
def test_manifest_errors_name_field_and_allowed(
    change: dict[str, object], field: str, allowed: str
) -> None:
    problems = manifest_problems({**GOOD, **change}, "plugins/dice/plugin.yaml")
    assert problems, "expected a problem"
    text = str(problems[0])
    assert text.startswith(f"plugins/dice/plugin.yaml: {field}: ")
    assert allowed in text


def test_durations_may_be_fractional() -> None:
    m = Manifest.model_validate({**GOOD, "health": {"interval_s": 0.25}, "stop_timeout_s": 1.5})
    assert m.health.interval_s == 0.25
    assert m.stop_timeout_s == 1.5


def test_discovery_skips_only_the_bad_plugins(tmp_path: Path) -> None:
    make_plugin(
        tmp_path,
        "a_good",
        "name: good\nversion: 1.0.0\nentrypoint: good:Good\ncommands: [hi]\n",
        "good.py",
        "class Good: ...\n",
    )
    make_plugin(tmp_path, "b_yaml", "name: [unclosed\n")
    make_plugin(tmp_path, "c_nomodule", "name: nomod\nversion: 1.0.0\nentrypoint: gone:X\n")
    make_plugin(
        tmp_path,
        "d_noclass",
        "name: nocls\nversion: 1.0.0\nentrypoint: m:Missing\n",
        "m.py",
        "class Other: ...\n",
    )
    make_plugin(tmp_path, "e_dup", "name: dupe\nversion: 1.0.0\nentrypoint: m:P\n", "m.py")
    make_plugin(tmp_path, "h_dup", "name: dupe\nversion: 2.0.0\nentrypoint: m:P\n", "m.py")
    make_plugin(
        tmp_path,
        "f_conflict",
        "name: other\nversion: 1.0.0\nentrypoint: m:P\ncommands: [hi]\n",
        "m.py",
    )
    make_plugin(tmp_path, "g_pkg", "name: pkg\nversion: 1.0.0\nentrypoint: thing:P\n")
    (tmp_path / "g_pkg" / "thing").mkdir()
    (tmp_path / "g_pkg" / "thing" / "__init__.py").write_text("class P: ...\n")
    found = discover([tmp_path])
    assert sorted(found.plugins) == ["good", "pkg"]
    texts = [str(p) for p in found.problems]
    assert len(texts) == 6, texts
    assert any("b_yaml" in t and "not valid YAML at line" in t for t in texts)
    assert any("c_nomodule" in t and "module 'gone' not found" in t for t in texts)
    assert any("d_noclass" in t and "no class 'Missing'" in t and "Other" in t for t in texts)
    dupes = [t for t in texts if "'dupe' is declared by 2 folders" in t]
    assert len(dupes) == 2, dupes
    assert all("e_dup" in t and "h_dup" in t for t in dupes), dupes
    assert any(
        "f_conflict" in t and "!hi is already claimed by plugin 'good'" in t and "'other'" in t
        for t in texts
    )


def test_config_overrides_manifest_and_env(tmp_path: Path) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(
        "plugins_dir: [a, b]\nadmins: ['console:console', 'irc:op']\n"
        "plugins:\n  dice: {restart_policy: always, limits: {memory_mb: 64},"
        " config: {max_dice: 3}}\n"
    )
    config = load_config(
        path, environ={"ROSEY_NATS_URL": "nats://127.0.0.1:4222", "ROSEY_STATE_DIR": "/tmp/x"}
    )
    assert config.plugins_dir == [Path("a"), Path("b")]
    assert config.nats.url == "nats://127.0.0.1:4222"
    assert config.state_dir == Path("/tmp/x")
    effective = config.apply(
        Manifest.model_validate({**GOOD, "config": {"max_dice": 9, "max_sides": 6}})
    )
    assert effective.restart_policy == "always"
    assert effective.limits.memory_mb == 64
    assert effective.limits.open_files == 256
    assert effective.config == {"max_dice": 3, "max_sides": 6}
    assert config.override_for("other") == PluginOverride()


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("max_crash_count: lots\n", "max_crash_count"),
        ("nats: {url: 'http://x'}\n", "nats.url"),
        ("plugins: {dice: {colour: red}}\n", "plugins.dice.colour"),
        ("- a list\n", ""),
    ],
)
def test_bad_config_names_the_field(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "plugins.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert info.value.field == field
    assert str(info.value).startswith(str(path))


def test_missing_default_config_is_fine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(environ={}) == BotConfig()
