"""Grants → NATS permissions and account links: the baseline, each grant, what crosses between
accounts, and what stays denied."""

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
    Export,
    Import,
    SubjectPermissions,
    account_links,
    all_permissions,
    callers_of,
    plugin_permissions,
    storage_subjects,
)
from rosey.protocol import subjects

BASE_PUBLISH = {"rosey.plugins.dice.>", "_R_.>"}
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


def test_callers_publish_the_callee_subject_and_the_callee_replies_through_the_broker() -> None:
    """Replies cross accounts through the service import (``_R_.>``), never a caller's inbox."""
    perms = all_permissions(
        {"dice": ["plugins.call:trivia"], "trivia": [], "quotes": ["plugins.call:trivia"]}
    )
    assert "rosey.commands.trivia.execute" in perms["dice"].publish_allow
    assert "rosey.commands.trivia.execute" in perms["quotes"].publish_allow
    assert set(perms["trivia"].publish_allow) == {"rosey.plugins.trivia.>", "_R_.>"}
    assert not any(s.startswith("_INBOX") for p in perms.values() for s in p.publish_allow)


def test_call_grant_for_a_plugin_that_is_not_installed() -> None:
    perms = all_permissions({"dice": ["plugins.call:gone"]})
    assert set(perms) == {"dice"}
    assert "rosey.commands.gone.execute" in perms["dice"].publish_allow


def test_calling_itself() -> None:
    perms = all_permissions({"dice": ["plugins.call:dice"]})["dice"]
    assert "rosey.commands.dice.execute" in perms.publish_allow
    assert "_INBOX_dice.>" in perms.subscribe_allow


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
    "_INBOX_ROUTER.a.1",
    "_INBOX_MANAGER.a.1",
    "_INBOX_other.a.1",
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
    assert not can(*pub, "_INBOX_other.x.1")
    assert can(*pub, "rosey.platform.console.send") is ("chat.send" in mine)
    assert can(*sub, "rosey.events.message") is bool({"events.message", "events.all"} & set(mine))
    assert can(*sub, "rosey.events.other") is ("events.all" in mine)
    assert can(*sub, "rosey.plugins.other.scored") is ("plugins.events:other" in mine)
    assert can(*pub, "$KV.rosey_dice.key") is ("storage" in mine)
    # The baseline never goes away.
    for subject in ("rosey.plugins.dice.scored", "_R_.a.b"):
        assert can(*pub, subject)
    for subject in ("rosey.commands.dice.execute", "rosey.health.dice.ping", "_INBOX_dice.a.1"):
        assert can(*sub, subject)


# --- account links: what crosses between the core's account and each plugin's ------------------

CORE = "ROSEY"


def _account(name: str) -> str:
    return f"plugin_{name}"


def _links(grants: dict[str, list[str]]) -> dict[str, tuple[set[Export], set[Import]]]:
    found = account_links(grants, core=CORE, account_of=_account)
    return {name: (set(links.exports), set(links.imports)) for name, links in found.items()}


def test_a_plugin_without_grants_exports_its_services_and_events_to_the_core_only() -> None:
    links = _links({"dice": []})
    exports, imports = links["dice"]
    assert exports == {
        Export("service", "rosey.commands.dice.execute", (CORE,)),
        Export("service", "rosey.health.dice.ping", (CORE,)),
        Export("stream", "rosey.plugins.dice.>", (CORE,)),
    }
    assert imports == set()
    core_exports, core_imports = links[CORE]
    assert core_exports == set()  # no export without importers: it would be public
    assert core_imports == {
        Import("service", "plugin_dice", "rosey.commands.dice.execute"),
        Import("service", "plugin_dice", "rosey.health.dice.ping"),
        Import("stream", "plugin_dice", "rosey.plugins.dice.>"),
    }


@pytest.mark.parametrize(
    ("grant", "core_export", "plugin_import"),
    [
        (
            "events.message",
            Export("stream", "rosey.events.message", ("plugin_dice",)),
            Import("stream", CORE, "rosey.events.message"),
        ),
        (
            "events.all",
            Export("stream", "rosey.events.>", ("plugin_dice",)),
            Import("stream", CORE, "rosey.events.>"),
        ),
        (
            "chat.send",
            Export("service", "rosey.platform.*.send", ("plugin_dice",)),
            Import("service", CORE, "rosey.platform.*.send"),
        ),
        (
            "plugins.call:trivia",
            Export("service", "rosey.relay.dice.>", ("plugin_dice",)),
            Import("service", CORE, "rosey.relay.dice.trivia", to="rosey.commands.trivia.execute"),
        ),
    ],
)
def test_each_grant_crosses_exactly_one_link(
    grant: str, core_export: Export, plugin_import: Import
) -> None:
    links = _links({"dice": [grant], "trivia": []})
    assert links[CORE][0] == {core_export}
    assert links["dice"][1] == {plugin_import}
    assert links["trivia"][1] == set()


def test_plugin_events_go_to_the_granted_plugins_only() -> None:
    links = _links({"dice": ["plugins.events:trivia"], "trivia": [], "other": []})
    trivia_events = next(e for e in links["trivia"][0] if e.kind == "stream")
    assert trivia_events.accounts == (CORE, "plugin_dice")
    assert links["dice"][1] == {Import("stream", "plugin_trivia", "rosey.plugins.trivia.>")}
    assert links["other"][1] == set()


def test_grants_naming_a_missing_plugin_import_no_account() -> None:
    links = _links({"dice": ["plugins.events:gone", "plugins.call:gone"]})
    assert links["dice"][1] == {
        Import("service", CORE, "rosey.relay.dice.gone", to="rosey.commands.gone.execute")
    }


@given(grant_lists, grant_lists)
def test_nothing_crosses_to_a_plugin_that_did_not_ask(mine: list[str], theirs: list[str]) -> None:
    """Every import of a plugin's account is one of its own grants; every export names who."""
    links = account_links({"dice": mine, "other": theirs}, core=CORE, account_of=_account)
    for link in links.values():
        assert all(export.accounts for export in link.exports)
    for imported in links["dice"].imports:
        if imported.account == "plugin_other":
            assert "plugins.events:other" in mine
        elif imported.subject.startswith("rosey.relay."):
            assert imported.subject.startswith("rosey.relay.dice.")
            assert f"plugins.call:{imported.subject.split('.')[3]}" in mine
        elif imported.subject == "rosey.platform.*.send":
            assert "chat.send" in mine
        else:
            assert imported.subject in {"rosey.events.message", "rosey.events.>"}
            assert imported.subject.replace("rosey.", "").replace(".>", ".all") in mine
    for export in links["other"].exports:
        if "plugin_dice" in export.accounts:
            assert export.subject == "rosey.plugins.other.>"
            assert "plugins.events:other" in mine
