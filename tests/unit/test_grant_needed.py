"""``rosey.plugins.grant_needed``: the grant a refused subject needed, checked against the
permissions that grant really gives (``plugin_permissions``)."""

from __future__ import annotations

import pytest

from rosey.plugins.grant_needed import Operation, grant_needed, refusal_message
from rosey.plugins.grants import plugin_permissions

PUB: Operation = "publish to"
SUB: Operation = "subscribe to"

# (operation, subject, the grant the plugin "notes" needs, None: no grant opens it)
TABLE: list[tuple[Operation, str, str | None]] = [
    (SUB, "rosey.events.message", "events.message"),
    (SUB, "rosey.events.user.join", "events.all"),
    (SUB, "rosey.events.>", "events.all"),
    (SUB, "rosey.plugins.dice.rolled", "plugins.events:dice"),
    (SUB, "rosey.plugins.dice.>", "plugins.events:dice"),
    (SUB, "rosey.plugins.*.>", None),
    (SUB, "rosey.>", None),
    (SUB, "rosey.manager.events.dice", None),
    (SUB, "rosey.commands.dice.execute", None),
    (SUB, "_INBOX_dice.abc", None),
    (PUB, "rosey.platform.test.send", "chat.send"),
    (PUB, "rosey.platform.*.send", "chat.send"),
    (PUB, "rosey.commands.dice.execute", "plugins.call:dice"),
    (PUB, "rosey.commands.*.execute", None),
    (PUB, "$JS.API.INFO", "storage"),
    (PUB, "$JS.API.STREAM.INFO.KV_rosey_notes", "storage"),
    (PUB, "$JS.API.DIRECT.GET.KV_rosey_notes.$KV.rosey_notes.k", "storage"),
    (PUB, "$KV.rosey_notes.some.key", "storage"),
    (PUB, "$KV.rosey_dice.some.key", None),
    (PUB, "$js.api.info", "storage"),  # as nats-py reports it: lower-cased
    (PUB, "$kv.rosey_notes.k", "storage"),
    (PUB, "$JS.API.STREAM.INFO.KV_rosey_dice", None),
    (PUB, "$JS.API.STREAM.CREATE.KV_rosey_notes", None),  # the core creates the bucket
    (PUB, "rosey.manager.stop", None),
    (PUB, "rosey.security.violation", None),
    (PUB, "rosey.events.message", None),
    (PUB, "rosey.plugins.dice.rolled", None),
    (PUB, "something.else", None),
]


def matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` one token, ``>`` one or more at the end."""
    p, s = pattern.split("."), subject.split(".")
    for i, token in enumerate(p):
        if token == ">":
            return len(s) > i
        if i >= len(s) or (token != "*" and token != s[i]):
            return False
    return len(p) == len(s)


def allowed(grants: list[str], operation: Operation, subject: str) -> bool:
    perms = plugin_permissions("notes", grants)
    allow, deny = (
        (perms.publish_allow, perms.publish_deny)
        if operation == PUB
        else (perms.subscribe_allow, perms.subscribe_deny)
    )
    return any(matches(a, subject) for a in allow) and not any(matches(d, subject) for d in deny)


@pytest.mark.parametrize(("operation", "subject", "grant"), TABLE)
def test_grant_needed(operation: Operation, subject: str, grant: str | None) -> None:
    assert grant_needed("notes", operation, subject) == grant


@pytest.mark.parametrize(
    ("operation", "subject", "grant"),
    [
        row
        for row in TABLE
        if row[2] is not None
        and "*" not in row[1]
        and ">" not in row[1]
        and row[1][:2] != "$j"
        and row[1][:2] != "$k"
    ],
)
def test_the_grant_named_really_opens_the_subject(
    operation: Operation, subject: str, grant: str
) -> None:
    """Naming a grant that would not help is worse than naming none."""
    assert not allowed([], operation, subject)
    assert allowed([grant], operation, subject)


def test_message_names_the_grant_and_the_file() -> None:
    text = refusal_message("notes", SUB, "rosey.events.message")
    assert text == (
        "plugin 'notes' may not subscribe to 'rosey.events.message': it needs the grant "
        "`events.message` in plugin.yaml (permissions: [events.message])"
    )


def test_message_when_no_grant_helps() -> None:
    text = refusal_message("notes", PUB, "rosey.manager.stop")
    assert text.startswith("plugin 'notes' may not publish to 'rosey.manager.stop': no grant")
