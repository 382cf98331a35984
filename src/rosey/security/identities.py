"""Per-run identities on the embedded broker, and the ``accounts`` block that enforces them.

The core (manager, router, operator of ``runtime.json``) has the account ``ROSEY``; every
plugin has an account of its own, ``plugin_<name>``, holding its user (allow-lists from its
grants), its quotas (connections, subscriptions, payload, JetStream storage) and the
exports/imports of the Rosey subjects its grants let cross (``rosey.plugins.grants``). A
plugin with ``storage`` also gets a ``keeper_<name>`` user in its account, used only by the core
to create the plugin's bucket with its size limit (the plugin itself may not create streams).

Passwords are random per run, never logged, and reach plugins only through their control
socket; the config file holding them is private to the bot (mode 0600).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from rosey.plugins.grants import (
    AccountLinks,
    Export,
    Import,
    SubjectPermissions,
    account_links,
    all_permissions,
)
from rosey.protocol import subjects

ADMIN_USER = "rosey_admin"
MANAGER_USER = "rosey_manager"
ROUTER_USER = "rosey_router"
#: The core's account. Upper case: plugin accounts are ``plugin_<lower-case name>``.
CORE_ACCOUNT = "ROSEY"
_PLUGIN_PREFIX = "plugin_"
_KEEPER_PREFIX = "keeper_"
_MB = 1024 * 1024


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = ""

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Credentials(user={self.user!r}, password=<hidden>)"


@dataclass(frozen=True)
class BrokerQuotas:
    """What one plugin's account may hold on the broker (DESIGN 2.5: its own quota).

    ``max_subscriptions`` is per connection (how nats-server applies it), so an account holds
    at most ``max_connections * max_subscriptions``; a connection that goes over is closed by
    the server. ``storage_mb`` is both the account's JetStream file quota and its bucket's
    ``max_bytes``; plugins without ``storage`` get no JetStream at all.
    """

    max_connections: int = 4
    max_subscriptions: int = 1000
    max_payload_kb: int = 1024
    storage_mb: int = 64
    max_consumers: int = 4

    def account_limits(self) -> dict[str, int]:
        return {
            "max_connections": self.max_connections,
            "max_subscriptions": self.max_subscriptions,
            "max_payload": self.max_payload_kb * 1024,
        }

    def jetstream(self) -> dict[str, int]:
        # max_mem 0: no memory-backed streams (they would count against the server's RAM).
        return {
            "max_file": self.storage_mb * _MB,
            "max_mem": 0,
            "max_streams": 1,
            "max_consumers": self.max_consumers,
        }

    @property
    def storage_bytes(self) -> int:
        return self.storage_mb * _MB


def plugin_user(plugin: str) -> str:
    """The broker user of a plugin (plugin names are ``[a-z][a-z0-9_]*``, so no clashes)."""
    return f"{_PLUGIN_PREFIX}{plugin}"


def plugin_account(plugin: str) -> str:
    """The broker account of a plugin (same spelling as its user: one user per account)."""
    return f"{_PLUGIN_PREFIX}{plugin}"


def plugin_of_user(user: str) -> str | None:
    """The plugin a broker user belongs to, None for the bot's own users."""
    return user[len(_PLUGIN_PREFIX) :] if user.startswith(_PLUGIN_PREFIX) else None


def plugin_of_account(account: str) -> str | None:
    """The plugin a broker account belongs to, None for the core's (and the system's)."""
    return account[len(_PLUGIN_PREFIX) :] if account.startswith(_PLUGIN_PREFIX) else None


def _secret() -> str:
    return secrets.token_urlsafe(24)


class IdentityBook:
    """The identities of one bot run: made once, extended when plugins appear."""

    def __init__(
        self,
        quotas: BrokerQuotas | None = None,
        *,
        core_storage_mb: int = 8,
    ) -> None:
        self.admin = Credentials(ADMIN_USER, _secret())
        self.manager = Credentials(MANAGER_USER, _secret())
        self.router = Credentials(ROUTER_USER, _secret())
        self.quotas = quotas or BrokerQuotas()
        #: JetStream file quota of the core's account (its desired-state bucket).
        self.core_storage_mb = core_storage_mb
        self._plugins: dict[str, Credentials] = {}
        self._keepers: dict[str, Credentials] = {}
        self._permissions: dict[str, SubjectPermissions] = {}
        self._links: dict[str, AccountLinks] = {}
        #: Connector instances (``connectors:``): each imports only its own sends.
        self._connectors: frozenset[str] = frozenset()

    def set_connectors(self, instances: Iterable[str]) -> None:
        """Name the plugins that are connector instances (before ``set_plugins``).

        Each one's account imports the core's ``rosey.connectors.<instance>.send`` (exported
        to it alone) as its local ``rosey.connector.send``, which its user may subscribe; it
        publishes its events on its own ``rosey.plugins.<instance>.>`` like any plugin
        (``rosey.security.connector_relay`` relays them onto ``rosey.events.*``).
        """
        self._connectors = frozenset(instances)

    def set_plugins(self, grants_by_plugin: Mapping[str, Iterable[str]]) -> None:
        """(Re)compute every plugin's permissions and links; existing passwords are kept."""
        frozen = {name: tuple(grants) for name, grants in grants_by_plugin.items()}
        self._permissions = all_permissions(frozen)
        self._links = account_links(frozen, core=CORE_ACCOUNT, account_of=plugin_account)
        self._link_connectors()
        for name, perms in self._permissions.items():
            self._plugins.setdefault(name, Credentials(plugin_user(name), _secret()))
            if perms.kv_bucket is not None:
                self._keepers.setdefault(name, Credentials(f"{_KEEPER_PREFIX}{name}", _secret()))

    def _link_connectors(self) -> None:
        core = self._links.get(CORE_ACCOUNT, AccountLinks())
        exports = list(core.exports)
        for name in sorted(self._connectors & set(self._permissions)):
            perms = self._permissions[name]
            self._permissions[name] = replace(
                perms,
                subscribe_allow=(*perms.subscribe_allow, subjects.CONNECTOR_SEND_LOCAL),
            )
            exports.append(Export("stream", subjects.connector_send(name), (plugin_account(name),)))
            own = self._links.get(name, AccountLinks())
            self._links[name] = AccountLinks(
                own.exports,
                (
                    *own.imports,
                    Import(
                        "stream",
                        CORE_ACCOUNT,
                        subjects.connector_send(name),
                        to=subjects.CONNECTOR_SEND_LOCAL,
                    ),
                ),
            )
        self._links[CORE_ACCOUNT] = AccountLinks(tuple(exports), core.imports)

    def plugins(self) -> list[str]:
        return sorted(self._permissions)

    def plugin(self, name: str) -> Credentials:
        return self._plugins[name]

    def keeper(self, name: str) -> Credentials:
        """The core's own user in a ``storage`` plugin's account (creates its bucket)."""
        return self._keepers[name]

    def permissions(self, name: str) -> SubjectPermissions:
        return self._permissions[name]

    def may_call(self, caller: str, callee: str) -> bool:
        """Whether ``caller`` was granted ``plugins.call:<callee>`` (the relay asks)."""
        perms = self._permissions.get(caller)
        return perms is not None and f"rosey.commands.{callee}.execute" in perms.publish_allow

    def jetstream_store_bytes(self) -> int:
        """The server's JetStream file budget: exactly what the accounts reserve (the core's
        and each ``storage`` plugin's), so no account can take another's share."""
        storing = sum(1 for perms in self._permissions.values() if perms.kv_bucket is not None)
        return (self.core_storage_mb + storing * self.quotas.storage_mb) * _MB

    def accounts(self) -> dict[str, dict[str, object]]:
        """The ``accounts`` map of the server config (pure data, for tests and rendering)."""
        core_links = self._links.get(CORE_ACCOUNT, AccountLinks())
        core: dict[str, object] = {
            "users": [
                {"user": c.user, "password": c.password}
                for c in (self.admin, self.manager, self.router)
            ],
            "jetstream": {
                "max_file": self.core_storage_mb * _MB,
                "max_mem": 0,
                "max_streams": -1,
                "max_consumers": -1,
            },
        }
        _add_links(core, core_links)
        found: dict[str, dict[str, object]] = {CORE_ACCOUNT: core}
        for name in self.plugins():
            creds = self._plugins[name]
            perms = self._permissions[name]
            users: list[dict[str, object]] = [
                {"user": creds.user, "password": creds.password, "permissions": perms.as_nats()}
            ]
            account: dict[str, object] = {
                "users": users,
                "limits": self.quotas.account_limits(),
            }
            if perms.kv_bucket is not None:
                keeper = self._keepers[name]
                users.append({"user": keeper.user, "password": keeper.password})
                account["jetstream"] = self.quotas.jetstream()
            _add_links(account, self._links.get(name, AccountLinks()))
            found[plugin_account(name)] = account
        return found

    def render(self) -> str:
        """The nats-server ``accounts`` block (JSON values are valid NATS config)."""
        return "accounts " + json.dumps(self.accounts(), indent=2) + "\n"


def _add_links(account: dict[str, object], links: AccountLinks) -> None:
    if links.exports:
        account["exports"] = [e.as_nats() for e in links.exports]
    if links.imports:
        account["imports"] = [i.as_nats() for i in links.imports]
