"""Which grant a refused publish or subscribe needed: the answer to "why was I refused?".

The broker says only *that* a plugin's publish or subscribe was refused, and on which subject
(``BusPermissionDenied``). A plugin author wants to know what to write in ``plugin.yaml``. This
module inverts ``rosey.plugins.grants.plugin_permissions`` for the subjects a grant opens, and
says so when no grant opens the subject (another plugin's bucket, ``rosey.manager.>``...).

Pure: used by the test harness (``rosey.sdk.testing``) and by whatever reports refusals to
authors; ``tests/unit/test_grant_needed.py`` checks that each answer really opens the subject.
"""

from __future__ import annotations

from typing import Literal

from rosey.plugins.grants import storage_subjects
from rosey.protocol import subjects

__all__ = ["Operation", "grant_needed", "refusal_message"]

#: What the plugin tried, in the words of ``BusPermissionDenied.operation``.
Operation = Literal["publish to", "subscribe to"]


def grant_needed(plugin: str, operation: Operation, subject: str) -> str | None:
    """The grant that lets ``plugin`` do ``operation`` on ``subject``; None if none does.

    Wildcard subjects count only where a grant opens exactly that wildcard
    (``rosey.events.>`` is ``events.all``; ``rosey.>`` is nothing).
    """
    parts = subject.split(".")
    if operation == "subscribe to":
        if subject == subjects.EVENTS_MESSAGE:
            return "events.message"
        if parts[:2] == ["rosey", "events"] and len(parts) > 2:
            return "events.all"
        if parts[:2] == ["rosey", "plugins"] and len(parts) > 3 and _is_name(parts[2]):
            return None if parts[2] == plugin else f"plugins.events:{parts[2]}"
        return None
    if len(parts) == 4 and parts[:2] == ["rosey", "platform"] and parts[3] == "send":
        return "chat.send"
    if len(parts) == 4 and parts[:2] == ["rosey", "commands"] and parts[3] == "execute":
        return f"plugins.call:{parts[2]}" if _is_name(parts[2]) else None
    if subject.upper().startswith(("$JS.", "$KV.")):
        # JetStream API calls and keys of its own bucket, as far as ``storage`` opens them:
        # not another plugin's bucket, not creating streams (the core creates the bucket).
        # Compared without case: nats-py lower-cases the server's error text, subject included.
        opened = storage_subjects(plugin)
        return "storage" if any(_matches(p.lower(), subject.lower()) for p in opened) else None
    return None


def refusal_message(plugin: str, operation: Operation, subject: str) -> str:
    """What to tell the author: the refusal, then the grant to add (or that none exists)."""
    what = f"plugin {plugin!r} may not {operation} {subject!r}"
    grant = grant_needed(plugin, operation, subject)
    if grant is None:
        return (
            f"{what}: no grant allows that (a plugin receives its own commands, replies, "
            f"publishes under rosey.plugins.{plugin}.>, and uses what its grants open; "
            "see docs/plugins/AUTHORING.md, section 4)"
        )
    return f"{what}: it needs the grant `{grant}` in plugin.yaml (permissions: [{grant}])"


def _matches(pattern: str, subject: str) -> bool:
    """NATS subject matching: ``*`` is one token, a final ``>`` one or more."""
    want, got = pattern.split("."), subject.split(".")
    for i, token in enumerate(want):
        if token == ">":
            return len(got) > i
        if i >= len(got) or token not in ("*", got[i]):
            return False
    return len(want) == len(got)


def _is_name(token: str) -> bool:
    """A plugin name (``^[a-z][a-z0-9_]{0,31}$``), not a wildcard."""
    return (
        0 < len(token) <= 32
        and token[0].isascii()
        and token[0].islower()
        and all(c.isascii() and (c.islower() or c.isdigit() or c == "_") for c in token)
    )
