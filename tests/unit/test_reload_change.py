"""The reload/restart decision (``rosey.manager.change_rules``): whether a re-read manifest may
replace the running one, and the summary of what changed. Pure, table-tested."""

from __future__ import annotations

from typing import Any

import pytest

from rosey.manager.change_rules import Refusal, change_summary, refusal
from rosey.protocol.manifest import Manifest


def manifest(name: str = "p", **fields: Any) -> Manifest:
    return Manifest.model_validate(
        {"name": name, "version": "1.0.0", "entrypoint": "m:C", **fields}
    )


#: a ← b (b depends on a); c alone.
DEPS = {"a": (), "b": ("a",), "c": ()}
OWNERS = {"a_cmd": "a", "b_cmd": "b", "c_cmd": "c"}


@pytest.mark.parametrize(
    ("name", "fields", "down", "expected"),
    [
        ("a", {"commands": ["a_cmd", "new"]}, {}, None),
        ("a", {"commands": []}, {}, None),  # giving commands up is fine
        (
            "a",
            {"commands": ["b_cmd"]},
            {},
            Refusal("commands", "!b_cmd is already claimed by plugin 'b'"),
        ),
        (
            "a",
            {"commands": ["b_cmd", "c_cmd"]},
            {},
            Refusal(
                "commands",
                "!b_cmd is already claimed by plugin 'b', !c_cmd is already claimed by plugin 'c'",
            ),
        ),
        ("a", {"dependencies": ["b"]}, {}, Refusal("dependencies", "dependency cycle: a → b → a")),
        (
            "c",
            {"dependencies": ["ghost"]},
            {},
            Refusal("dependencies", "plugin 'c' depends on 'ghost', which is not installed"),
        ),
        ("c", {"dependencies": ["a"]}, {}, None),
        (
            "c",
            {"dependencies": ["a"]},
            {"a": "stopped"},
            Refusal("dependencies", "plugin 'c' needs 'a' running first, but it is stopped"),
        ),
        ("b", {"dependencies": []}, {}, None),  # dropping a dependency is fine
    ],
)
def test_refusal(
    name: str, fields: dict[str, Any], down: dict[str, str], expected: Refusal | None
) -> None:
    got = refusal(name, manifest(name, **fields), DEPS, OWNERS, running=True, down=down)
    assert got == expected


def test_a_plugin_not_running_may_take_a_dependency_that_is_not_running() -> None:
    candidate = manifest("c", dependencies=["a"])
    assert refusal("c", candidate, DEPS, OWNERS, running=False, down={"a": "stopped"}) is None


def test_a_problem_that_existed_before_is_not_blamed_on_the_change() -> None:
    deps = {"a": ("ghost",), "c": ()}
    assert refusal("c", manifest("c", commands=["x"]), deps, {}, running=True, down={}) is None


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ({}, {}, []),
        ({"version": "1.0.0"}, {"version": "1.1.0"}, ["version 1.0.0 → 1.1.0"]),
        (
            {"permissions": ["storage", "chat.send"]},
            {"permissions": ["storage", "events.message"]},
            ["permissions: +events.message -chat.send"],
        ),
        ({"commands": ["a"]}, {"commands": ["b"]}, ["commands: +b -a"]),
        ({}, {"limits": {"memory_mb": 64}}, ["limits changed"]),
        ({}, {"config": {"k": 1}}, ["config changed"]),
    ],
)
def test_change_summary(old: dict[str, Any], new: dict[str, Any], expected: list[str]) -> None:
    assert change_summary(manifest(**old), manifest(**new)) == expected
