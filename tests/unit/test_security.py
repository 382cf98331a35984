"""Pure parts of the permission system: violation parsing, policy, identities."""

from __future__ import annotations

import json

import pytest

from rosey.security.identities import IdentityBook, plugin_of_user, plugin_user
from rosey.security.violations import Violation, ViolationPolicy, parse_violation

LINE = (
    "[11932] 2026/11/24 22:31:00.042780 [ERR] 127.0.0.1:59790 - cid:5 - "
    '"v2.16.0:python3:plugin:dice"'
    ' - "$G/user:plugin_{user}" - {kind} Violation - Subject "{subject}"'
)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (
            LINE.format(user="hostile", kind="Publish", subject="rosey.manager.stop"),
            Violation(
                "hostile",
                "publish",
                "rosey.manager.stop",
                "the broker refused to publish 'rosey.manager.stop'",
            ),
        ),
        (
            LINE.format(user="hostile", kind="Subscription", subject=">") + ", SID 1",
            Violation("hostile", "subscribe", ">", "the broker refused to subscribe '>'"),
        ),
        (
            LINE.format(user="x", kind="Publish", subject="a").replace(
                "user:plugin_x", "user:rosey_router"
            ),
            None,
        ),
        ("[INF] Server is ready", None),
    ],
)
def test_parse_violation(line: str, expected: Violation | None) -> None:
    assert parse_violation(line) == expected


def test_client_chosen_name_cannot_frame_another_plugin() -> None:
    """The client name ("plugin:dice") is the client's choice; only the user counts."""
    line = LINE.format(user="hostile", kind="Publish", subject="x").replace(
        "plugin:dice", "plugin_dice"
    )
    violation = parse_violation(line)
    assert violation is not None
    assert violation.plugin == "hostile"


def test_policy_window_and_limit() -> None:
    policy = ViolationPolicy(max_violations=2, window_s=10)
    assert [policy.record("p", t) for t in (0, 1, 2)] == [False, False, True]
    assert policy.totals["p"] == 3
    policy.forget("p")
    assert policy.record("p", 3) is False
    assert [policy.record("q", t) for t in (0, 11, 22)] == [False, False, False]
    never = ViolationPolicy(max_violations=0)
    assert not any(never.record("p", t) for t in range(100))


def test_identities_render_a_valid_users_block() -> None:
    book = IdentityBook()
    book.set_plugins({"dice": [], "calendar": ["plugins.call:markov", "chat.send"], "markov": []})
    text = book.render()
    users = json.loads(text.split("users: ", 1)[1].rsplit("}", 1)[0])
    by_name = {u["user"]: u for u in users}
    assert set(by_name) == {
        "rosey_admin",
        "rosey_manager",
        "rosey_router",
        "plugin_dice",
        "plugin_calendar",
        "plugin_markov",
    }
    assert "permissions" not in by_name["rosey_admin"]
    calendar = by_name["plugin_calendar"]["permissions"]
    assert "rosey.commands.markov.execute" in calendar["publish"]["allow"]
    assert "rosey.manager.>" in calendar["publish"]["deny"]
    assert "_INBOX_calendar.>" in by_name["plugin_markov"]["permissions"]["publish"]["allow"]
    assert len({u["password"] for u in users}) == len(users)
    assert book.plugin("dice").password not in repr(book.plugin("dice"))
    again = book.plugin("dice").password
    book.set_plugins({"dice": [], "new": []})
    assert book.plugin("dice").password == again
    assert plugin_of_user(plugin_user("new")) == "new"
    assert plugin_of_user("rosey_admin") is None
