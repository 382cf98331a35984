"""Per-run identities on the embedded broker, and the authorization block that enforces them.

Every plugin connects as its own user whose publish/subscribe allow-lists come from its grants
(``rosey.plugins.grants``). The bot's own connections (manager, router) and the operator
(``runtime.json``) are unrestricted users. Passwords are random per run, never logged, and
reach plugins only through their control socket.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rosey.plugins.grants import SubjectPermissions, all_permissions

ADMIN_USER = "rosey_admin"
MANAGER_USER = "rosey_manager"
ROUTER_USER = "rosey_router"
_PLUGIN_PREFIX = "plugin_"


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str = ""

    def __repr__(self) -> str:  # never print a secret by accident
        return f"Credentials(user={self.user!r}, password=<hidden>)"


def plugin_user(plugin: str) -> str:
    """The broker user of a plugin (plugin names are ``[a-z][a-z0-9_]*``, so no clashes)."""
    return f"{_PLUGIN_PREFIX}{plugin}"


def plugin_of_user(user: str) -> str | None:
    """The plugin a broker user belongs to, None for the bot's own users."""
    return user[len(_PLUGIN_PREFIX) :] if user.startswith(_PLUGIN_PREFIX) else None


def _secret() -> str:
    return secrets.token_urlsafe(24)


class IdentityBook:
    """The identities of one bot run: made once, extended when plugins appear."""

    def __init__(self) -> None:
        self.admin = Credentials(ADMIN_USER, _secret())
        self.manager = Credentials(MANAGER_USER, _secret())
        self.router = Credentials(ROUTER_USER, _secret())
        self._plugins: dict[str, Credentials] = {}
        self._permissions: dict[str, SubjectPermissions] = {}

    def set_plugins(self, grants_by_plugin: Mapping[str, Iterable[str]]) -> None:
        """(Re)compute every plugin's permissions; existing passwords are kept."""
        self._permissions = all_permissions(grants_by_plugin)
        for name in self._permissions:
            self._plugins.setdefault(name, Credentials(plugin_user(name), _secret()))

    def plugins(self) -> list[str]:
        return sorted(self._permissions)

    def plugin(self, name: str) -> Credentials:
        return self._plugins[name]

    def permissions(self, name: str) -> SubjectPermissions:
        return self._permissions[name]

    def render(self) -> str:
        """The nats-server ``authorization`` block (JSON values are valid NATS config)."""
        users: list[dict[str, object]] = [
            {"user": c.user, "password": c.password}
            for c in (self.admin, self.manager, self.router)
        ]
        for name, creds in sorted(self._plugins.items()):
            if name in self._permissions:
                users.append(
                    {
                        "user": creds.user,
                        "password": creds.password,
                        "permissions": self._permissions[name].as_nats(),
                    }
                )
        return "authorization {\n  users: " + json.dumps(users, indent=2) + "\n}\n"
