"""Reaching a running bot's management API from outside (the CLI, scripts, tests).

DESIGN 2.1: the bot is found by an explicit NATS URL, else ``ROSEY_NATS_URL``, else
``<state-dir>/runtime.json`` (which also holds the operator's credentials). A runtime.json whose
pid is dead is stale and says so at once; any connect is bounded, so "no bot" is a quick answer.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rosey.bus.client import EventBus
from rosey.errors import DecodeError
from rosey.protocol import subjects

DEFAULT_STATE_DIR = Path(".rosey")
__all__ = [
    "DEFAULT_STATE_DIR",
    "RUNTIME_FILE",
    "BotAddress",
    "ManagementClient",
    "NoBot",
    "RuntimeInfo",
    "find_state_dir",
    "forget_bot",
    "locate",
    "read_runtime",
    "remember_bot",
    "user_record",
]
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


def locate(
    nats_url: str | None, state_dir: Path | None, *, cwd: Path | None = None
) -> BotAddress | NoBot:
    """Where the bot is, the way operators expect (DESIGN 2.1, issue 17 item 6).

    In order: ``nats_url`` (``--nats-url``), ``ROSEY_NATS_URL``; ``<state_dir>/runtime.json``
    when a state folder is given (``--state-dir``, else ``ROSEY_STATE_DIR``): only there; else
    ``.rosey/runtime.json`` in the current folder or the nearest parent that has one (a bot
    started in the checkout, the CLI run from a subfolder; that file answers even when stale,
    as the nearest ``.git`` does); else the state folder of the bot this user started last
    (``user_record``). When nothing is found the answer names every place looked.
    """
    if nats_url:
        return BotAddress(nats_url, source="--nats-url")
    env_url = os.environ.get("ROSEY_NATS_URL")
    if env_url:
        return BotAddress(env_url, source="ROSEY_NATS_URL")
    given = state_dir or (
        Path(os.environ["ROSEY_STATE_DIR"]) if os.environ.get("ROSEY_STATE_DIR") else None
    )
    if given is not None:
        where = "--state-dir" if state_dir else "ROSEY_STATE_DIR"
        return _from_file(
            given / RUNTIME_FILE,
            f"no --nats-url, no ROSEY_NATS_URL and no {given / RUNTIME_FILE} ({where})",
        )
    here = (cwd or Path.cwd()).absolute()
    for folder in (here, *here.parents):
        path = folder / DEFAULT_STATE_DIR / RUNTIME_FILE
        if folder == here and cwd is None:
            path = DEFAULT_STATE_DIR / RUNTIME_FILE  # said as the operator would
        if path.exists():  # the nearest one answers, as the nearest .git does: stale or not
            return _from_file(path, "")
    record = user_record()
    last = _recorded_state_dir()
    if last is None:
        noted = f"no bot noted in {record} (where 'rosey run' notes the last one this user started)"
    else:
        found = _from_file(last / RUNTIME_FILE, "")
        if isinstance(found, BotAddress):
            return found
        noted = f"the bot noted in {record}: {found.reason}"
    return NoBot(
        "no running bot found: no --nats-url, no ROSEY_NATS_URL, no ROSEY_STATE_DIR; no "
        f"{DEFAULT_STATE_DIR / RUNTIME_FILE} in {here} or a folder above it; {noted} "
        "(start one with 'rosey run', or pass --state-dir of the running bot)"
    )


def find_state_dir() -> Path:
    """The state folder tools that read files (``rosey logs``) use when none is given: the
    same search as ``locate`` (``ROSEY_STATE_DIR``; ``.rosey`` here or in the nearest parent
    that has one; the user's last bot's), else ``.rosey``."""
    if os.environ.get("ROSEY_STATE_DIR"):
        return Path(os.environ["ROSEY_STATE_DIR"])
    here = Path.cwd()
    for folder in (here, *here.parents):
        if _is_dir(folder / DEFAULT_STATE_DIR):
            return DEFAULT_STATE_DIR if folder == here else folder / DEFAULT_STATE_DIR
    return _recorded_state_dir() or DEFAULT_STATE_DIR


def _from_file(path: Path, missing: str) -> BotAddress | NoBot:
    if not path.exists():
        return NoBot(
            f"no running bot found: {missing} "
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


def user_record() -> Path:
    """Where the bot notes its state folder for its user: ``$XDG_RUNTIME_DIR/rosey/last-bot``
    (gone at logout), else ``$XDG_STATE_HOME/rosey/last-bot`` (``~/.local/state``)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and _is_dir(Path(runtime)):
        return Path(runtime) / "rosey" / "last-bot"
    state = os.environ.get("XDG_STATE_HOME")
    if not state:
        try:
            state = str(Path.home() / ".local" / "state")
        except (RuntimeError, KeyError):  # no home folder: a record nobody can write
            state = "~/.local/state"
    return Path(state) / "rosey" / "last-bot"


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # not ours to look into (another user's runtime folder)
        return False


def _recorded_state_dir() -> Path | None:
    try:
        text = user_record().read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return Path(text) if text and Path(text).is_absolute() else None


def remember_bot(state_dir: Path) -> Path | None:
    """Note ``state_dir`` as this user's last bot (written by ``rosey run`` once it is up);
    the record, or None when it cannot be written (the CLI then only searches folders)."""
    record = user_record()
    try:
        record.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = record.with_name(f".last-bot.{os.getpid()}")
        tmp.write_text(f"{state_dir.absolute()}\n", encoding="utf-8")
        tmp.replace(record)
    except OSError:
        return None
    return record


def forget_bot(state_dir: Path) -> None:
    """Remove the record at a clean stop, unless another bot has taken it over since."""
    if _recorded_state_dir() == state_dir.absolute():
        with contextlib.suppress(OSError):
            user_record().unlink()


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
