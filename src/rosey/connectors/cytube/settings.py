"""A CyTube connector's settings, and secrets given as ``env:VAR`` or ``file:PATH`` (pure).

The ``connectors:`` entry of the bot configuration (DESIGN 2.9) becomes a ``CytubeSettings``;
secrets are never written inline: ``resolve_secret`` reads them where the operator keeps them.
The process wrapper calls it in the connector's own process, so the secret never crosses argv,
the environment of other processes, logs or status.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from rosey.errors import ConfigError

__all__ = ["CytubeSettings", "resolve_secret"]

_CHANNEL = re.compile(r"^[A-Za-z0-9_-]{1,30}$")


def resolve_secret(value: str | None, *, source: str, field: str) -> str | None:
    """The secret that ``value`` names: ``env:VAR`` (an environment variable) or ``file:PATH``
    (a file's first line, so a trailing newline does not become part of a password).

    ``None`` stays ``None`` (no password: a guest login, or a channel without a password).
    """
    if value is None:
        return None
    kind, _, where = value.partition(":")
    if kind == "env" and where:
        secret = os.environ.get(where)
        if secret is None:
            raise ConfigError(source, field, f"environment variable {where} is not set")
        return secret
    if kind == "file" and where:
        try:
            text = Path(where).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(source, field, f"cannot read {where}: {exc.strerror}") from None
        lines = text.splitlines()
        return lines[0] if lines else ""
    raise ConfigError(
        source, field, "a secret is given as env:VARIABLE or file:/path/to/file, never inline"
    )


@dataclass(frozen=True)
class CytubeSettings:
    """What one CyTube connector needs (secrets already resolved)."""

    server: str  # e.g. https://cytu.be: the socket server is discovered from it
    channel: str
    username: str
    password: str | None = None  # None: log in as a guest
    channel_password: str | None = None
    platform: str = "cytube"
    #: After this many kicks in a row (no stable connection between), stop retrying.
    max_kick_retries: int = 3
    #: Outgoing chat lines waiting for the pacer; lines beyond are dropped and counted.
    queue_size: int = 500
    #: The server's ``max-chat-message-length`` (UTF-16 code units).
    max_length: int = 320
    #: How often one line is sent again after ``cooldown``/``noflood`` before it is given up.
    max_resends: int = 5
    #: Seconds to wait for each step: discovery, connect, join, login.
    step_timeout: float = 10.0

    def __post_init__(self) -> None:
        where = f"connector {self.platform}"
        if not _CHANNEL.match(self.channel):
            raise ConfigError(
                where, "channel", f"{self.channel!r}: 1–30 of the characters A–Z a–z 0–9 _ -"
            )
        if not self.server.startswith(("http://", "https://")):
            raise ConfigError(where, "server", f"{self.server!r}: an http:// or https:// URL")
        if not self.username:
            raise ConfigError(where, "username", "must not be empty")

    @property
    def channel_key(self) -> str:
        """The channel as the server names it (lowercased)."""
        return self.channel.lower()

    def __repr__(self) -> str:
        # Never show the secrets (logs, tracebacks, status).
        return (
            f"CytubeSettings(server={self.server!r}, channel={self.channel!r}, "
            f"username={self.username!r}, password={'***' if self.password else None}, "
            f"channel_password={'***' if self.channel_password else None})"
        )
