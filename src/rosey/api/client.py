"""Reaching a running bot's management API from outside (the CLI, scripts, tests).

DESIGN 2.1: the bot is found by an explicit NATS URL, else ``ROSEY_NATS_URL``, else
``<state-dir>/runtime.json`` (which also holds the operator's credentials). A runtime.json whose
pid is dead is stale and says so at once; any connect is bounded, so "no bot" is a quick answer.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosey.bus.client import EventBus
from rosey.errors import DecodeError
from rosey.protocol import subjects

DEFAULT_STATE_DIR = Path(".rosey")
RUNTIME_FILE = "runtime.json"
CONNECT_TIMEOUT = 3.0


@dataclass(frozen=True)
class BotAddress:
    url: str
    user: str | None = None
    password: str | None = None
    source: str = ""


@dataclass(frozen=True)
class NoBot:
    """Why no bot can be addressed, in words for the operator."""

    reason: str


def locate(nats_url: str | None, state_dir: Path | None) -> BotAddress | NoBot:
    """Where the bot is: ``nats_url``, ``ROSEY_NATS_URL``, or ``<state-dir>/runtime.json``."""
    if nats_url:
        return BotAddress(nats_url, source="--nats-url")
    env_url = os.environ.get("ROSEY_NATS_URL")
    if env_url:
        return BotAddress(env_url, source="ROSEY_NATS_URL")
    folder = state_dir or Path(os.environ.get("ROSEY_STATE_DIR") or DEFAULT_STATE_DIR)
    path = folder / RUNTIME_FILE
    if not path.exists():
        return NoBot(
            f"no running bot found: no --nats-url, no ROSEY_NATS_URL and no {path} "
            "(start one with 'rosey run', or pass --state-dir of the running bot)"
        )
    info = read_runtime(path)
    if isinstance(info, NoBot):
        return info
    pid, address = info
    if not _alive(pid):
        return NoBot(
            f"no running bot: {path} names pid {pid}, which is not running "
            "(a stale file left by a bot that did not stop cleanly; 'rosey run' replaces it)"
        )
    return address


@dataclass(frozen=True)
class RuntimeInfo:
    """``<state-dir>/runtime.json`` (DESIGN 2.1): how tools reach the running bot.

    The one definition of the file: the bot writes ``to_json()``, tools read ``from_json``.
    It holds the operator's credentials, so the bot writes it private (0600).
    """

    pid: int
    nats_url: str
    user: str | None
    password: str | None
    #: The HTTP face (DESIGN 2.11): its base URL and bearer token, when it runs.
    http_url: str | None = None
    http_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "nats_url": self.nats_url,
            "user": self.user,
            "password": self.password,
            "http_url": self.http_url,
            "http_token": self.http_token,
        }

    @classmethod
    def from_json(cls, data: object) -> RuntimeInfo:
        """The file's fields; ``ValueError`` naming what is wrong when it is not one."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        pid, url = data.get("pid"), data.get("nats_url")
        user, password = data.get("user"), data.get("password")
        http_url, http_token = data.get("http_url"), data.get("http_token")
        if (
            not isinstance(pid, int)
            or not isinstance(url, str)
            or not isinstance(user, str | None)
            or not isinstance(password, str | None)
        ):
            raise ValueError("pid, nats_url, user, password")
        return cls(
            pid,
            url,
            user,
            password,
            http_url if isinstance(http_url, str) else None,
            http_token if isinstance(http_token, str) else None,
        )


def read_runtime(path: Path) -> tuple[int, BotAddress] | NoBot:
    """``runtime.json`` (``RuntimeInfo``): the bot's pid and how to reach its bus.

    Read here rather than through ``rosey.bot`` so that the CLI need not import the whole bot.
    """
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return NoBot(f"cannot read {path}: {exc}")
    try:
        info = RuntimeInfo.from_json(data)
    except ValueError as exc:
        return NoBot(f"{path} is not a runtime file ({exc})")
    return info.pid, BotAddress(info.nats_url, info.user, info.password, source=str(path))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ManagementClient:
    """One connection to the bot's bus for ``rosey.manager.<action>`` requests."""

    def __init__(self, address: BotAddress, *, connect_timeout: float = CONNECT_TIMEOUT) -> None:
        self.address = address
        self.bus = EventBus(
            address.url,
            name="rosey-cli",
            user=address.user,
            password=address.password,
            connect_timeout=connect_timeout,
        )

    async def __aenter__(self) -> ManagementClient:
        await self.bus.connect()  # BusUnavailable within connect_timeout
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.bus.close()

    async def call(self, action: str, body: dict[str, Any], *, timeout: float) -> dict[str, Any]:
        """The reply envelope; ``BusError`` (no responders, timeout) if there is none."""
        subject = subjects.manager_action(action)
        reply = await self.bus.request(subject, body, timeout=timeout)
        envelope = reply.json()
        if not isinstance(envelope, dict) or not isinstance(envelope.get("ok"), bool):
            raise DecodeError(subject, "the reply is not an ok/error envelope")
        return envelope
