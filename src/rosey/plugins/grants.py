"""Permission grants (DESIGN 2.5) → the NATS publish/subscribe lists of a plugin's identity.

The embedded nats-server enforces these lists, so a forbidden publish or subscribe never reaches
anyone. What every plugin gets without asking:

- subscribe its command requests ``rosey.commands.<self>.execute``, the manager's health ping
  ``rosey.health.<self>.ping`` and its own reply inbox ``_INBOX_<self>.>`` (so it must connect
  with ``inbox_prefix="_INBOX_<self>"``);
- publish its events ``rosey.plugins.<self>.>`` and replies to the router's and the manager's
  fixed inboxes ``_INBOX_ROUTER.>`` / ``_INBOX_MANAGER.>``. Fixed prefixes instead of
  ``allow_responses``: a server config reload drops in-flight response grants.

``plugins.call:<y>`` lets x publish ``rosey.commands.<y>.execute``; the reply goes from y to
x's inbox, so y (the callee) gets publish on ``_INBOX_<x>.>``. That needs everyone's grants at
once: :func:`all_permissions`. Every plugin is denied publishing to ``rosey.manager.>``,
``rosey.security.>``, ``rosey.events.>`` and the router's command ``.result`` / ``.error``.

``storage`` gives the bucket ``rosey_<self>`` for get / put / delete / purge of keys. The
manager creates the bucket (admin identity) before the plugin starts, and the plugin opens it
with ``js.key_value()``. Creating streams and consumers is not granted by default
(``kv_watch=False``): the JetStream API takes a consumer's deliver subject and a stream's
republish target from the request body, which no subject permission checks, so a plugin able to
create them could publish anywhere (``rosey.events.message`` included) through the server.
``network`` has no subject; it is recorded here for the sandbox.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from rosey.protocol import subjects

__all__ = [
    "GRANTS",
    "PUBLISH_DENY",
    "SubjectPermissions",
    "all_permissions",
    "callers_of",
    "plugin_permissions",
    "storage_subjects",
]

#: Grants without a target; ``plugins.call:<name>`` and ``plugins.events:<name>`` take one.
GRANTS = ("events.message", "events.all", "chat.send", "storage", "network")
_TARGETED = ("plugins.call", "plugins.events")
_KNOWN = ", ".join((*GRANTS, *(f"{kind}:<name>" for kind in _TARGETED)))

#: Subjects no plugin may publish to, whatever it was granted.
PUBLISH_DENY: tuple[str, ...] = (
    subjects.MANAGER_ALL,
    subjects.SECURITY_ALL,
    subjects.EVENTS_ALL,
    subjects.COMMANDS_RESULTS_ALL,
    subjects.COMMANDS_ERRORS_ALL,
)


@dataclass(frozen=True)
class SubjectPermissions:
    """What one plugin's NATS identity may publish and subscribe to; deny wins over allow."""

    publish_allow: tuple[str, ...]
    subscribe_allow: tuple[str, ...]
    publish_deny: tuple[str, ...] = PUBLISH_DENY
    subscribe_deny: tuple[str, ...] = ()
    #: ``network`` granted: the sandbox leaves network access open.
    network: bool = False
    #: ``storage`` granted: the bucket the manager must create before the plugin starts.
    kv_bucket: str | None = None

    def as_nats(self) -> dict[str, dict[str, list[str]]]:
        """The ``permissions`` block of a nats-server user: allow lists always, deny if any."""
        block: dict[str, dict[str, list[str]]] = {}
        for direction, allow, deny in (
            ("publish", self.publish_allow, self.publish_deny),
            ("subscribe", self.subscribe_allow, self.subscribe_deny),
        ):
            block[direction] = {"allow": list(allow)}
            if deny:
                block[direction]["deny"] = list(deny)
        return block


def storage_subjects(plugin: str, *, kv_watch: bool = False) -> tuple[str, ...]:
    """Publish subjects for the ``storage`` grant: JetStream API calls and key writes.

    Without ``kv_watch``: what nats-py's ``key_value()``, ``get``, ``put``, ``create``,
    ``update``, ``delete`` and ``purge`` use. ``kv_watch`` adds stream and consumer creation
    for ``create_key_value``, ``watch``, ``keys``, ``history`` and ``purge_deletes`` (see the
    module docstring for why that is off by default).
    """
    api = subjects.js_stream_api
    found = [
        subjects.JS_API_INFO,
        api("STREAM.INFO", plugin),
        api("STREAM.MSG.GET", plugin),
        api("DIRECT.GET", plugin),
        api("DIRECT.GET", plugin, wildcard=True),
        subjects.kv_keys_all(plugin),
    ]
    if kv_watch:
        found += [
            api("STREAM.CREATE", plugin),
            api("STREAM.PURGE", plugin),
            api("CONSUMER.CREATE", plugin),
            api("CONSUMER.CREATE", plugin, wildcard=True),
            api("CONSUMER.INFO", plugin, wildcard=True),
            subjects.js_flow_control(plugin),
        ]
    return tuple(found)


def plugin_permissions(
    plugin: str,
    grants: Iterable[str],
    *,
    callers: Iterable[str] = (),
    kv_watch: bool = False,
) -> SubjectPermissions:
    """The permissions of ``plugin`` from its grants; ``callers`` are the plugins allowed to
    call it (``plugins.call:<plugin>``), whose inboxes it must be able to reply to.

    Raises ``ValueError`` for a grant it does not know and ``SubjectError`` for a bad name.
    """
    publish = [
        subjects.plugin_events_all(plugin),
        subjects.inbox_all(subjects.ROUTER_INBOX_PREFIX),
        subjects.inbox_all(subjects.MANAGER_INBOX_PREFIX),
    ]
    subscribe = [
        subjects.command_execute(plugin),
        subjects.health_ping(plugin),
        subjects.plugin_inbox_all(plugin),
    ]
    network = False
    bucket = None
    for kind, target in sorted(map(_parse, set(grants))):
        if kind == "events.message":
            subscribe.append(subjects.EVENTS_MESSAGE)
        elif kind == "events.all":
            subscribe.append(subjects.EVENTS_ALL)
        elif kind == "chat.send":
            publish.append(subjects.PLATFORM_SEND_ANY)
        elif kind == "plugins.call":
            publish.append(subjects.command_execute(target))
        elif kind == "plugins.events":
            subscribe.append(subjects.plugin_events_all(target))
        elif kind == "storage":
            publish.extend(storage_subjects(plugin, kv_watch=kv_watch))
            bucket = subjects.kv_bucket(plugin)
        else:  # "network": _parse lets nothing else through
            network = True
    publish.extend(subjects.plugin_inbox_all(caller) for caller in sorted(set(callers)))
    return SubjectPermissions(
        publish_allow=_unique(publish),
        subscribe_allow=_unique(subscribe),
        network=network,
        kv_bucket=bucket,
    )


def callers_of(grants_by_plugin: Mapping[str, Collection[str]], plugin: str) -> tuple[str, ...]:
    """The plugins granted ``plugins.call:<plugin>``, sorted."""
    wanted = f"plugins.call:{plugin}"
    return tuple(sorted(name for name, grants in grants_by_plugin.items() if wanted in grants))


def all_permissions(
    grants_by_plugin: Mapping[str, Iterable[str]], *, kv_watch: bool = False
) -> dict[str, SubjectPermissions]:
    """Every plugin's permissions from everyone's grants (callees reply to their callers)."""
    frozen = {name: tuple(grants) for name, grants in grants_by_plugin.items()}
    return {
        name: plugin_permissions(name, grants, callers=callers_of(frozen, name), kv_watch=kv_watch)
        for name, grants in sorted(frozen.items())
    }


def _parse(grant: str) -> tuple[str, str]:
    """``(kind, target)``; target is ``""`` for grants that take none."""
    if grant in GRANTS:
        return grant, ""
    kind, sep, target = grant.partition(":")
    if sep and kind in _TARGETED and target:
        return kind, target
    raise ValueError(f"unknown permission grant {grant!r}; allowed: {_KNOWN}")


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    """``items`` without repeats, first occurrence kept."""
    return tuple(dict.fromkeys(items))
