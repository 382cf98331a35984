"""Permission grants (DESIGN 2.5) → a plugin's NATS account: allow-lists, exports, imports.

On the embedded broker every plugin has an account of its own (``plugin_<name>``) and the core
(manager, router, operator) has ``ROSEY``. Nothing crosses between accounts except what an
account exports and another imports, and a server-generated message (a JetStream ack, a
service reply) stays in the account of the client that caused it. So a plugin can only ever
cause messages on subjects it may use itself, and the core's state (its key-value bucket) is
out of every plugin's reach. Inside its account, the plugin's user still has allow-lists, so a
forbidden publish or subscribe is refused and logged (the violation monitor reports it).

What every plugin gets without asking:

- subscribe its command requests ``rosey.commands.<self>.execute`` and the manager's health ping
  ``rosey.health.<self>.ping`` (both exported as services to the core), and its own reply inbox
  ``_INBOX_<self>.>`` (so it must connect with ``inbox_prefix="_INBOX_<self>"``);
- publish its events ``rosey.plugins.<self>.>`` (a stream exported to the core and to the
  plugins granted ``plugins.events:<self>``) and replies on ``_R_.>``: the broker maps the reply
  subject of every request that crosses into the account onto ``_R_.…``, and routes the answer
  back through the import. Unlike ``allow_responses`` grants, these mappings survive a config
  reload (measured with nats-server 2.15.1).

Grants add: ``events.message`` / ``events.all`` imports of the core's ``rosey.events.message`` /
``rosey.events.>``; ``chat.send`` imports the core's ``rosey.platform.*.send`` service;
``plugins.call:<y>`` imports the core's relay service ``rosey.relay.<self>.<y>`` as the local
``rosey.commands.<y>.execute`` (the core relays the call and sets its user and platform:
``rosey.security.relay``); ``plugins.events:<y>`` imports y's event stream. Every plugin is
denied publishing to ``rosey.manager.>``, ``rosey.security.>``, ``rosey.events.>`` and the
router's command ``.result`` / ``.error`` (in its own account they would reach nobody anyway).

``storage`` gives the bucket ``rosey_<self>`` for get / put / delete / purge of keys, in the
plugin's own account with JetStream limits of its own. The core creates the bucket (with its
``max_bytes``) before the plugin starts, and the plugin opens it with ``js.key_value()``.
Creating streams and consumers is not granted by default (``kv_watch=False``): the bucket's
size is the core's decision, not the plugin's. ``network`` has no subject; it is recorded here
for the sandbox.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from rosey.protocol import subjects

__all__ = [
    "GRANTS",
    "PUBLISH_DENY",
    "AccountLinks",
    "Export",
    "Import",
    "SubjectPermissions",
    "account_links",
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
    kv_watch: bool = False,
) -> SubjectPermissions:
    """The permissions of ``plugin``'s user inside its own account, from its grants.

    Raises ``ValueError`` for a grant it does not know and ``SubjectError`` for a bad name.
    """
    publish = [
        subjects.plugin_events_all(plugin),
        subjects.inbox_all(subjects.SERVICE_REPLY_PREFIX),
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
    """Every plugin's permissions (sorted by name, repeats ignored)."""
    frozen = {name: tuple(grants) for name, grants in grants_by_plugin.items()}
    return {
        name: plugin_permissions(name, grants, kv_watch=kv_watch)
        for name, grants in sorted(frozen.items())
    }


# -- accounts: what crosses between the core's account and each plugin's --------------------


@dataclass(frozen=True)
class Export:
    """One export of an account: a ``stream`` (messages flow to the importer) or a
    ``service`` (requests flow from the importer), to the named accounts only."""

    kind: Literal["stream", "service"]
    subject: str
    accounts: tuple[str, ...]

    def as_nats(self) -> dict[str, object]:
        return {self.kind: self.subject, "accounts": list(self.accounts)}


@dataclass(frozen=True)
class Import:
    """One import: ``subject`` as exported by ``account``, seen locally as ``to`` if set."""

    kind: Literal["stream", "service"]
    account: str
    subject: str
    to: str | None = None

    def as_nats(self) -> dict[str, object]:
        block: dict[str, object] = {self.kind: {"account": self.account, "subject": self.subject}}
        if self.to is not None:
            block["to"] = self.to
        return block


@dataclass(frozen=True)
class AccountLinks:
    """The exports and imports of one account."""

    exports: tuple[Export, ...] = ()
    imports: tuple[Import, ...] = ()


def account_links(
    grants_by_plugin: Mapping[str, Iterable[str]],
    *,
    core: str,
    account_of: Callable[[str], str],
) -> dict[str, AccountLinks]:
    """The exports and imports of the core's account (key ``core``) and of every plugin's
    (key: the plugin's name), from everyone's grants.

    An export always names the accounts it is for: one without importers is left out (an
    export with no ``accounts`` would be public). Grants naming the plugin itself need no link
    (its own subjects are in its account). A grant naming a plugin that does not exist
    adds nothing (there is no account to import from); ``plugins.call`` to it still goes to the
    core's relay, which answers that the plugin is unknown.
    """
    frozen = {name: sorted(map(_parse, set(grants))) for name, grants in grants_by_plugin.items()}
    names = sorted(frozen)

    def having(kind: str, target: str = "") -> tuple[str, ...]:
        return tuple(account_of(n) for n in names if (kind, target) in frozen[n])

    core_exports: list[Export] = [
        Export("stream", subjects.EVENTS_MESSAGE, having("events.message")),
        Export("stream", subjects.EVENTS_ALL, having("events.all")),
        Export("service", subjects.PLATFORM_SEND_ANY, having("chat.send")),
    ]
    core_imports: list[Import] = []
    links: dict[str, AccountLinks] = {}
    for name in names:
        account = account_of(name)
        core_imports += [
            Import("service", account, subjects.command_execute(name)),
            Import("service", account, subjects.health_ping(name)),
            Import("stream", account, subjects.plugin_events_all(name)),
        ]
        exports = [
            Export("service", subjects.command_execute(name), (core,)),
            Export("service", subjects.health_ping(name), (core,)),
            Export(
                "stream",
                subjects.plugin_events_all(name),
                (core, *(a for a in having("plugins.events", name) if a != account)),
            ),
        ]
        imports: list[Import] = []
        callees: list[str] = []
        for kind, target in frozen[name]:
            if kind == "events.message":
                imports.append(Import("stream", core, subjects.EVENTS_MESSAGE))
            elif kind == "events.all":
                imports.append(Import("stream", core, subjects.EVENTS_ALL))
            elif kind == "chat.send":
                imports.append(Import("service", core, subjects.PLATFORM_SEND_ANY))
            elif kind == "plugins.call" and target != name:
                # (calling itself stays inside its account: no relay, no import onto the subject
                # it already serves, which would loop the core's requests back to the relay)
                callees.append(target)
                imports.append(
                    Import(
                        "service",
                        core,
                        subjects.relay(name, target),
                        to=subjects.command_execute(target),
                    )
                )
            elif kind == "plugins.events" and target in frozen and target != name:
                imports.append(
                    Import("stream", account_of(target), subjects.plugin_events_all(target))
                )
        if callees:
            core_exports.append(Export("service", subjects.relay_of_caller(name), (account,)))
        links[name] = AccountLinks(tuple(exports), tuple(imports))
    links[core] = AccountLinks(tuple(e for e in core_exports if e.accounts), tuple(core_imports))
    return links


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
