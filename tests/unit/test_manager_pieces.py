"""The pieces issue 11 took out of the manager and the faces, each with one definition.

The command directory, the outcome subjects, STATUS's keys, the runtime file, the error codes
and the ``ConfigError``/``ManifestError`` shape: pure, no bus and no process.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest

from rosey import config_schema
from rosey.api import results
from rosey.api.client import BotAddress, NoBot, RuntimeInfo, read_runtime
from rosey.config import LimitsMax, LimitsOverride
from rosey.errors import ERROR_CODES, ConfigError, FileError, ManifestError, RoseyError
from rosey.lifecycle.states import State
from rosey.manager.directory import Commands, unavailable_reason
from rosey.manager.events import outcome_of
from rosey.manager.record import PluginRecord
from rosey.manager.status import STATS_KEYS, STATUS_KEYS
from rosey.protocol import manifest_schema, wire
from rosey.protocol.manifest import LIMIT_FIELDS, Limits
from rosey.sandbox.limits import ResourceLimits


def test_commands_belong_to_the_first_claim() -> None:
    commands = Commands()
    commands.claim("dice", ["roll", "flip"])
    assert commands.owner("roll") == "dice"
    assert commands.owner("nope") is None
    assert commands.taken(["roll", "echo"]) == {"roll": "dice"}
    assert commands.as_dict() == {"roll": "dice", "flip": "dice"}


def record(state: State, last_error: str | None = None, restart_at: float | None = None) -> Any:
    return SimpleNamespace(state=state, last_error=last_error, next_restart_at=restart_at)


@pytest.mark.parametrize(
    ("plugin", "reason"),
    [
        (None, "it is not installed"),
        (record(State.RUNNING), None),
        (record(State.UNHEALTHY), None),
        (record(State.STOPPED), "it is stopped"),
        (
            record(State.CRASHED, "crashed (exit 1); last stderr lines:\n  | boom", 107.4),
            "it is crashed: crashed (exit 1); restarting in 7 s",
        ),
        (
            record(State.DISABLED, "disabled by an operator"),
            "it is disabled: disabled by an operator",
        ),
    ],
)
def test_unavailable_reason(plugin: PluginRecord | None, reason: str | None) -> None:
    assert unavailable_reason(plugin, now=100.0) == reason


@pytest.mark.parametrize(
    ("subject", "outcome"),
    [
        ("rosey.commands.dice.result", ("dice", True)),
        ("rosey.commands.dice.error", ("dice", False)),
        ("rosey.commands.dice", None),
        ("rosey.commands.dice.result.extra", None),
    ],
)
def test_outcome_subjects(subject: str, outcome: tuple[str, bool] | None) -> None:
    assert outcome_of(subject) == outcome


def test_status_keys_come_from_the_one_definition() -> None:
    assert STATUS_KEYS[:3] == ("name", "version", "state")
    assert STATUS_KEYS[-3:] == ("stats", "permissions", "enforced")
    assert STATS_KEYS == ("running", "pid", "cpu_percent", "memory_mb")
    # The faces' Status is STATUS plus extras, not a second copy of its fields.
    faces = tuple(results.Status.__annotations__)
    assert faces[: len(STATUS_KEYS)] == STATUS_KEYS
    assert set(faces[len(STATUS_KEYS) :]) == {
        "kind",
        "layers",
        "started",
        "violations",
        "resources",
        "limits",
        "bounds",
    }


def test_runtime_file_round_trip(tmp_path: Path) -> None:
    info = RuntimeInfo(42, "nats://127.0.0.1:4222", "admin", "pw", "http://127.0.0.1:1", "tok")
    assert RuntimeInfo.from_json(info.to_json()) == info
    path = tmp_path / "runtime.json"
    path.write_text(wire.encode(info.to_json()).decode())
    assert read_runtime(path) == (
        42,
        BotAddress("nats://127.0.0.1:4222", "admin", "pw", source=str(path)),
    )


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[]", "not a JSON object"),
        ('{"pid": "1", "nats_url": "nats://x"}', "pid, nats_url, user, password"),
        ("{", "cannot read"),
    ],
)
def test_a_bad_runtime_file_says_why(tmp_path: Path, text: str, why: str) -> None:
    path = tmp_path / "runtime.json"
    path.write_text(text)
    found = read_runtime(path)
    assert isinstance(found, NoBot)
    assert why in found.reason


def test_error_codes_have_one_list() -> None:
    classes: list[type[RoseyError]] = [RoseyError, *_subclasses(RoseyError)]
    for cls in classes:
        assert cls.code in ERROR_CODES, cls


def _subclasses(cls: type[RoseyError]) -> list[type[RoseyError]]:
    found: list[type[RoseyError]] = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


@pytest.mark.parametrize("cls", [ConfigError, ManifestError])
def test_config_and_manifest_errors_share_one_shape(cls: type[FileError]) -> None:
    error = cls("config/plugins.yaml", "plugins.dice.limits", "must be a mapping")
    assert isinstance(error, FileError)
    assert (error.file, error.field, error.problem) == (
        "config/plugins.yaml",
        "plugins.dice.limits",
        "must be a mapping",
    )
    assert str(error) == "config/plugins.yaml: plugins.dice.limits: must be a mapping"
    assert error.code == "bad_request"
    assert cast(Any, ConfigError("f", "", "p")).source == "f"


def test_the_limits_models_keep_the_manifests_fields() -> None:
    """The manifest's ``limits`` is the one list; the config's two models and the sandbox's
    ``ResourceLimits`` take the same fields (the ranges are shared aliases), and the spawn
    request is built from the manifest's values, not copied field by field."""
    assert tuple(Limits.model_fields) == LIMIT_FIELDS
    assert tuple(LimitsOverride.model_fields) == LIMIT_FIELDS
    assert set(LIMIT_FIELDS) <= set(LimitsMax.model_fields)
    assert set(LIMIT_FIELDS) <= {f.name for f in dataclasses.fields(ResourceLimits)}
    for field in LIMIT_FIELDS:
        ranges = manifest_schema.Limits.model_fields[field].metadata
        assert ranges == config_schema.LimitsMax.model_fields[field].metadata
    limits = Limits(memory_mb=64, data_mb=5)
    assert ResourceLimits(**limits.model_dump()).memory_mb == 64
