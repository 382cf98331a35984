"""The action registry and the request models: one definition, the same words on every face."""

from __future__ import annotations

from typing import Any

import pytest

from rosey.api.action import Permission
from rosey.api.actions import ACTIONS, get_action
from rosey.errors import BadRequest

DESIGN_ACTIONS = ["list", "status", "start", "stop", "restart", "enable", "disable", "logs"]


def test_every_design_action_is_registered_in_design_order() -> None:
    assert list(ACTIONS)[: len(DESIGN_ACTIONS)] == DESIGN_ACTIONS
    # DESIGN 2.10 adds reload (install/update/rollback/remove may follow: a superset).
    assert set(ACTIONS) >= {*DESIGN_ACTIONS, "help", "rescan", "reload"}


@pytest.mark.parametrize(
    ("name", "usage", "mutating", "permission"),
    [
        ("list", "list", False, Permission.ANYONE),
        ("status", "status NAME", False, Permission.ANYONE),
        ("start", "start NAME", True, Permission.ADMIN),
        ("stop", "stop NAME", True, Permission.ADMIN),
        ("restart", "restart NAME", True, Permission.ADMIN),
        ("enable", "enable NAME", True, Permission.ADMIN),
        ("disable", "disable NAME", True, Permission.ADMIN),
        ("logs", "logs NAME [N]", False, Permission.ADMIN),
        ("help", "help [ACTION]", False, Permission.ANYONE),
    ],
)
def test_action_declarations(name: str, usage: str, mutating: bool, permission: str) -> None:
    action = ACTIONS[name]
    assert action.usage == usage
    assert action.mutating is mutating
    assert action.permission == permission
    assert action.summary.endswith(".")
    assert action.summary == action.help.splitlines()[0]


def test_unknown_action_names_the_actions() -> None:
    with pytest.raises(BadRequest) as caught:
        get_action("frobnicate")
    assert caught.value.code == "bad_request"
    assert str(caught.value) == f"unknown action 'frobnicate'; actions: {', '.join(ACTIONS)}"
    assert str(caught.value).startswith(
        "unknown action 'frobnicate'; actions: list, status, start, stop, restart, enable, "
        "disable, logs, "
    )


def test_a_very_long_unknown_action_is_shortened() -> None:
    with pytest.raises(BadRequest, match=r"unknown action 'x{37}\.\.\.'"):
        get_action("x" * 500)


@pytest.mark.parametrize(
    ("action", "data", "strict", "expected"),
    [
        ("list", {}, True, {}),
        ("status", {"plugin": "dice"}, True, {"plugin": "dice"}),
        ("logs", {"plugin": "dice"}, True, {"plugin": "dice", "lines": 50, "cursor": None}),
        (
            "logs",
            {"plugin": "dice", "lines": 7},
            True,
            {"plugin": "dice", "lines": 7, "cursor": None},
        ),
        (
            "logs",
            {"plugin": "dice", "lines": "7"},
            False,
            {"plugin": "dice", "lines": 7, "cursor": None},
        ),
        (
            "logs",
            {"plugin": "d", "cursor": "12:34"},
            True,
            {"plugin": "d", "lines": 50, "cursor": "12:34"},
        ),
        ("help", {}, True, {"action": None}),
    ],
)
def test_requests_that_fit(
    action: str, data: dict[str, Any], strict: bool, expected: dict[str, Any]
) -> None:
    assert ACTIONS[action].parse(data, strict=strict).model_dump() == expected


@pytest.mark.parametrize(
    ("action", "data", "strict", "message"),
    [
        ("status", {}, True, "field 'plugin' is required (status takes: plugin)"),
        ("status", {"plugin": 5}, True, "field 'plugin': input should be a valid string (got 5)"),
        ("status", {"plugin": None}, False, "field 'plugin': input should be a valid string"),
        ("status", {"plugin": ""}, True, "field 'plugin': string should have at least 1 character"),
        ("status", {"plugin": "x" * 65}, True, "field 'plugin': string should have at most 64"),
        (
            "stop",
            {"plugin": "a", "force": 1},
            True,
            "field 'force' is not known to stop; fields: plugin",
        ),
        ("list", {"plugin": "a"}, True, "field 'plugin' is not known to list; fields: none"),
        (
            "logs",
            {"plugin": "a", "lines": "7"},
            True,
            "field 'lines': input should be a valid integer",
        ),
        (
            "logs",
            {"plugin": "a", "lines": True},
            True,
            "field 'lines': input should be a valid integer",
        ),
        (
            "logs",
            {"plugin": "a", "lines": 7.5},
            False,
            "field 'lines': input should be a valid integer",
        ),
        (
            "logs",
            {"plugin": "a", "lines": 0},
            True,
            "field 'lines': input should be greater than or equal to 1 (got 0)",
        ),
        ("logs", {"plugin": "a", "lines": 10001}, True, "less than or equal to 10000"),
        (
            "logs",
            {"plugin": "a", "cursor": "1:x"},
            True,
            "field 'cursor': string should match pattern",
        ),
    ],
)
def test_requests_that_do_not_fit_name_the_field(
    action: str, data: dict[str, Any], strict: bool, message: str
) -> None:
    with pytest.raises(BadRequest) as caught:
        ACTIONS[action].parse(data, strict=strict)
    assert message in str(caught.value)


def test_several_problems_are_all_named() -> None:
    with pytest.raises(BadRequest) as caught:
        ACTIONS["logs"].parse({"lines": "x", "extra": 1}, strict=True)
    text = str(caught.value)
    assert "field 'plugin' is required" in text
    assert "field 'lines'" in text
    assert "field 'extra' is not known to logs" in text


def test_a_long_bad_value_is_shortened_in_the_message() -> None:
    with pytest.raises(BadRequest) as caught:
        ACTIONS["logs"].parse({"plugin": "a", "lines": "9" * 500}, strict=True)
    assert len(str(caught.value)) < 200
