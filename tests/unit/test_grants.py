"""Grants → NATS permissions: the baseline, each grant, callee replies, and what stays denied."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.js.client import KV_PRE_TEMPLATE, KV_STREAM_TEMPLATE

from rosey.errors import SubjectError
from rosey.plugins.grants import (
    GRANTS,
    PUBLISH_DENY,
    SubjectPermissions,
    all_permissions,
    callers_of,
    plugin_permissions,
    storage_subjects,
)
from rosey.protocol import subjects

BASE_PUBLISH = {"rosey.plugins.dice.>", "_INBOX_ROUTER.>", "_INBOX_MANAGER.>"}
BASE_SUBSCRIBE = {"rosey.commands.dice.execute", "rosey.health.dice.ping", "_INBOX_dice.>"}
DENY = {
    "rosey.manager.>",
    "rosey.security.>",
    "rosey.events.>",
    "rosey.commands.*.result",
    "rosey.commands.*.error",
}
KV_BASIC = {
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.KV_rosey_dice",
    "$JS.API.STREAM.MSG.GET.KV_rosey_dice",
    "$JS.API.DIRECT.GET.KV_rosey_dice",
    "$JS.API.DIRECT.GET.KV_rosey_dice.>",
    "$KV.rosey_dice.>",
}
KV_WATCH = {
    "$JS.API.STREAM.CREATE.KV_rosey_dice",
    "$JS.API.STREAM.PURGE.KV_rosey_dice",
    "$JS.API.CONSUMER.CREATE.KV_rosey_dice",
    "$JS.API.CONSUMER.CREATE.KV_rosey_dice.>",
    "$JS.API.CONSUMER.INFO.KV_rosey_dice.>",
    "$JS.FC.KV_rosey_dice.>",
}


def test_baseline_without_grants() -> None:
    perms = plugin_permissions("dice", [])
    assert set(perms.publish_allow) == BASE_PUBLISH
    assert set(perms.subscribe_allow) == BASE_SUBSCRIBE
    assert set(perms.publish_deny) == DENY
    assert perms.subscribe_deny == ()
    assert (perms.network, perms.kv_bucket) == (False, None)


@pytest.mark.parametrize(
    ("grant", "publish", "subscribe"),
    [
        ("events.message", set(), {"rosey.events.message"}),
        ("events.all", set(), {"rosey.events.>"}),
        ("chat.send", {"rosey.platform.*.send"}, set()),
        ("plugins.call:trivia", {"rosey.commands.trivia.execute"}, set()),
        ("plugins.events:trivia", set(), {"rosey.plugins.trivia.>"}),
        ("storage", KV_BASIC, set()),
        ("network", set(), set()),
    ],
)
def test_each_grant_adds_exactly_its_subjects(
    grant: str, publish: set[str], subscribe: set[str]
) -> None:
    perms = plugin_permissions("dice", [grant])
    assert set(perms.publish_allow) == BASE_PUBLISH | publish
    assert set(perms.subscribe_allow) == BASE_SUBSCRIBE | subscribe
    assert set(perms.publish_deny) == DENY


def test_network_and_storage_are_recorded() -> None:
    perms = plugin_permissions("dice", ["network", "storage"])
    assert perms.network is True
    assert perms.kv_bucket == "rosey_dice"


def test_storage_with_kv_watch_adds_stream_and_consumer_creation() -> None:
    perms = plugin_permissions("dice", ["storage"], kv_watch=True)
    assert set(perms.publish_allow) == BASE_PUBLISH | KV_BASIC | KV_WATCH
    assert set(storage_subjects("dice", kv_watch=True)) == KV_BASIC | KV_WATCH
    assert set(storage_subjects("dice")) == KV_BASIC


def test_kv_watch_without_storage_grants_nothing() -> None:
    assert plugin_permissions("dice", [], kv_watch=True) == plugin_permissions("dice", [])


def test_bucket_naming_matches_nats_py() -> None:
    """nats-py opens bucket B through stream KV_B and writes keys under $KV.B.: ours must agree."""
    bucket = subjects.kv_bucket("dice")
    assert subjects.kv_stream("dice") == KV_STREAM_TEMPLATE.format(bucket=bucket)
    assert subjects.kv_keys_all("dice") == KV_PRE_TEMPLATE.format(bucket=bucket) + ">"


def test_callee_may_reply_to_its_callers_inbox() -> None:
    perms = all_permissions(
        {"dice": ["plugins.call:trivia"], "trivia": [], "quotes": ["plugins.call:trivia"]}
    )
    assert "rosey.commands.trivia.execute" in perms["dice"].publish_allow
    assert "rosey.commands.trivia.execute" in perms["quotes"].publish_allow
    assert set(perms["trivia"].publish_allow) == {
        "rosey.plugins.trivia.>",
        "_INBOX_ROUTER.>",
        "_INBOX_MANAGER.>",
        "_INBOX_dice.>",
        "_INBOX_quotes.>",
    }
    # The callers gain nothing on each other's or the callee's inbox.
    assert not any(s.startswith("_INBOX_trivia") for s in perms["dice"].publish_allow)
    assert "_INBOX_quotes.>" not in perms["dice"].publish_allow


def test_call_grant_for_a_plugin_that_is_not_installed() -> None:
    perms = all_permissions({"dice": ["plugins.call:gone"]})
    assert set(perms) == {"dice"}
    assert "rosey.commands.gone.execute" in perms["dice"].publish_allow


def test_calling_itself() -> None:
    perms = all_permissions({"dice": ["plugins.call:dice"]})["dice"]
    assert "rosey.commands.dice.execute" in perms.publish_allow
    assert "_INBOX_dice.>" in perms.publish_allow


def test_callers_of() -> None:
    grants = {"b": ["plugins.call:a"], "a": [], "c": ["plugins.call:b"], "d": ["plugins.call:a"]}
    assert callers_of(grants, "a") == ("b", "d")
    assert callers_of(grants, "c") == ()


def test_all_permissions_is_sorted_deterministic_and_ignores_repeats() -> None:
    grants = {"b": ["chat.send", "events.all", "chat.send"], "a": []}
    first = all_permissions(grants)
    assert list(first) == ["a", "b"]
    assert first == all_permissions({"a": [], "b": ["events.all", "chat.send"]})
    assert first["b"] == plugin_permissions("b", iter(["events.all", "chat.send"]))
    assert len(first["b"].publish_allow) == len(set(first["b"].publish_allow))


@pytest.mark.parametrize(
    "grant",
    ["", "files", "events", "plugins.call", "plugins.call:", "storage:dice", "plugins.other:x"],
)
def test_unknown_grant_is_refused(grant: str) -> None:
    with pytest.raises(ValueError, match=f"unknown permission grant {re.escape(repr(grant))}"):
        plugin_permissions("dice", [grant])


@pytest.mark.parametrize(
    ("plugin", "grants"),
    [("a.b", []), ("a*", []), ("dice", ["plugins.call:x.y"]), ("dice", ["plugins.events:>"])],
)
def test_names_that_would_escape_their_subject_are_refused(plugin: str, grants: list[str]) -> None:
    with pytest.raises(SubjectError):
        plugin_permissions(plugin, grants)


def test_js_stream_api_refuses_a_bad_operation() -> None:
    with pytest.raises(SubjectError):
        subjects.js_stream_api("STREAM.*", "dice")


@pytest.mark.parametrize("plugin", ["manager", "router"])
def test_plugin_named_like_a_core_identity_gets_no_core_inbox(plugin: str) -> None:
    """Why core inboxes are upper case: with ``_INBOX_manager`` a plugin named ``manager`` would get
    the manager's reply inbox (``_INBOX_manager.>``) to subscribe to."""
    perms = plugin_permissions(plugin, [])
    for core in (subjects.MANAGER_INBOX_PREFIX, subjects.ROUTER_INBOX_PREFIX):
        assert not can(perms.subscribe_allow, perms.subscribe_deny, f"{core}.abc.1")


def test_as_nats_block() -> None:
    perms = SubjectPermissions(("a.>",), ("b",), publish_deny=("c",), subscribe_deny=())
    assert perms.as_nats() == {
        "publish": {"allow": ["a.>"], "deny": ["c"]},
        "subscribe": {"allow": ["b"]},
    }
    both = SubjectPermissions(("a",), ("b",), publish_deny=(), subscribe_deny=("d",))
    assert both.as_nats() == {
        "publish": {"allow": ["a"]},
        "subscribe": {"allow": ["b"], "deny": ["d"]},
    }


def test_deny_list_constant() -> None:
    assert set(PUBLISH_DENY) == DENY


# --- properties: what a plugin can reach, whatever it was granted ------------------------------


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    pat, sub = pattern.split("."), subject.split(".")
    for i, token in enumerate(pat):
        if token == ">":
            return len(sub) > i
        if i >= len(sub) or (token != "*" and token != sub[i]):
            return False
    return len(pat) == len(sub)


def can(allow: tuple[str, ...], deny: tuple[str, ...], subject: str) -> bool:
    return any(matches(p, subject) for p in allow) and not any(matches(p, subject) for p in deny)


@pytest.mark.parametrize(
    ("pattern", "subject", "expected"),
    [
        ("a.>", "a.b", True),
        ("a.>", "a", False),
        ("a.*.c", "a.b.c", True),
        ("a.*.c", "a.b.d", False),
        ("a.b", "a.b.c", False),
        ("a.b.c", "a.b", False),
    ],
)
def test_matcher(pattern: str, subject: str, expected: bool) -> None:
    assert matches(pattern, subject) is expected


TARGETS = ["dice", "other"]
grant_lists = st.lists(
    st.sampled_from([*GRANTS, *(f"plugins.{k}:{t}" for k in ("call", "events") for t in TARGETS)]),
    max_size=8,
)

NEVER_PUBLISH = [
    "rosey.manager.start",
    "rosey.manager.events.dice",
    "rosey.security.violation",
    "rosey.events.message",
    "rosey.commands.dice.result",
    "rosey.commands.other.error",
    "rosey.plugins.other.scored",
    "rosey.health.other.ping",
    "_INBOX.abc",
    "$JS.API.STREAM.DELETE.KV_rosey_dice",
    "$JS.API.STREAM.INFO.KV_rosey_other",
    "$KV.rosey_other.key",
]
NEVER_SUBSCRIBE = [
    "rosey.commands.other.execute",
    "rosey.health.other.ping",
    "_INBOX_other.abc",
    "_INBOX_MANAGER.abc",
    "_INBOX_ROUTER.abc",
    "rosey.manager.start",
    "rosey.platform.console.send",
]


@given(grant_lists, grant_lists)
def test_forbidden_subjects_stay_forbidden(mine: list[str], theirs: list[str]) -> None:
    perms = all_permissions({"dice": mine, "other": theirs})["dice"]
    for subject in NEVER_PUBLISH:
        assert not can(perms.publish_allow, perms.publish_deny, subject), subject
    for subject in NEVER_SUBSCRIBE:
        assert not can(perms.subscribe_allow, perms.subscribe_deny, subject), subject
    # Grant-dependent rights appear exactly when granted.
    pub = perms.publish_allow, perms.publish_deny
    sub = perms.subscribe_allow, perms.subscribe_deny
    assert can(*pub, "rosey.commands.other.execute") is ("plugins.call:other" in mine)
    assert can(*pub, "_INBOX_other.x.1") is ("plugins.call:dice" in theirs)
    assert can(*pub, "rosey.platform.console.send") is ("chat.send" in mine)
    assert can(*sub, "rosey.events.message") is bool({"events.message", "events.all"} & set(mine))
    assert can(*sub, "rosey.events.other") is ("events.all" in mine)
    assert can(*sub, "rosey.plugins.other.scored") is ("plugins.events:other" in mine)
    assert can(*pub, "$KV.rosey_dice.key") is ("storage" in mine)
    # The baseline never goes away.
    for subject in ("rosey.plugins.dice.scored", "_INBOX_ROUTER.a.1", "_INBOX_MANAGER.a.1"):
        assert can(*pub, subject)
    for subject in ("rosey.commands.dice.execute", "rosey.health.dice.ping", "_INBOX_dice.a.1"):
        assert can(*sub, subject)
