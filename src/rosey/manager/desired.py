"""The desired state store: which plugins an operator enabled or disabled at runtime.

An operator's ``enable``/``disable`` must survive a bot restart. The choice is kept in a
JetStream key-value bucket when the server has JetStream (the embedded one does), else in
``<state_dir>/desired-state.json``. One document holds every plugin's choice; it is small and
only the manager writes it, so a whole-document write per change is simple and enough.

Precedence, lowest first: the manifest, then ``config/plugins.yaml`` (``plugins.<name>.enabled``),
then the persisted runtime choice. A runtime choice stays in force until it is changed again at
runtime, or until the operator edits the config's ``enabled`` for that plugin: each record keeps
the config value it was made against, and a record made against a different config value is
stale and dropped (:func:`resolve_enabled`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from rosey.bus.client import EventBus
from rosey.bus.kv import KeyValue
from rosey.errors import BusError
from rosey.files import write_atomically

__all__ = [
    "BUCKET",
    "FILE_NAME",
    "DesiredState",
    "DesiredStore",
    "FileStore",
    "KvStore",
    "open_store",
    "resolve_enabled",
]

log = logging.getLogger("rosey.manager")

#: The manager's bucket. Upper case on purpose: plugin buckets are ``rosey_<name>`` and plugin
#: names are lower case, so no plugin's ``storage`` grant can reach this one.
BUCKET = "ROSEY_MANAGER"
KEY = "desired_state"
#: What the bucket may hold: one small document (history 1). On the embedded broker it lives
#: in the core's account, whose JetStream storage is reserved for it, so no plugin's writes or
#: server-generated acks can reach it or fill the space it needs.
MAX_BYTES = 1024 * 1024
FILE_NAME = "desired-state.json"

Source = Literal["config", "runtime"]


@dataclass(frozen=True)
class DesiredState:
    """One operator choice."""

    enabled: bool
    #: ``plugins.<name>.enabled`` of the config when the choice was made.
    config_enabled: bool
    #: Wall-clock time of the choice (for the operator; never compared).
    changed_at: float = 0.0

    @classmethod
    def parse(cls, data: Any) -> DesiredState | None:
        if not isinstance(data, dict):
            return None
        enabled, config_enabled = data.get("enabled"), data.get("config_enabled")
        changed_at = data.get("changed_at", 0.0)
        if not isinstance(enabled, bool) or not isinstance(config_enabled, bool):
            return None
        if not isinstance(changed_at, int | float) or isinstance(changed_at, bool):
            changed_at = 0.0
        return cls(enabled, config_enabled, float(changed_at))


def resolve_enabled(config_enabled: bool, record: DesiredState | None) -> tuple[bool, Source]:
    """Whether a plugin is enabled at bot start, and what decided it.

    The runtime record wins while it was made against the config value in force now; a record
    made against another value means the operator edited the config since: the config wins.
    """
    if record is not None and record.config_enabled == config_enabled:
        return record.enabled, "runtime"
    return config_enabled, "config"


class DesiredStore(Protocol):
    """Where the choices live; ``where`` says it in words for the log and the docs."""

    where: str

    async def load(self) -> dict[str, DesiredState]: ...

    async def save(self, choices: Mapping[str, DesiredState]) -> None: ...


def _encode(choices: Mapping[str, DesiredState]) -> bytes:
    body = {name: asdict(state) for name, state in sorted(choices.items())}
    return json.dumps({"version": 1, "plugins": body}, indent=1).encode()


def _decode(data: bytes, where: str) -> dict[str, DesiredState]:
    try:
        body = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.error("desired state in %s is not JSON (%s); starting from the config", where, exc)
        return {}
    plugins = body.get("plugins") if isinstance(body, dict) else None
    if not isinstance(plugins, dict):
        log.error("desired state in %s has no 'plugins' mapping; ignored", where)
        return {}
    result: dict[str, DesiredState] = {}
    for name, raw in plugins.items():
        state = DesiredState.parse(raw)
        if state is None:
            log.error("desired state in %s: entry %r is malformed; ignored", where, name)
        else:
            result[str(name)] = state
    return result


class KvStore:
    """The choices in the manager's JetStream key-value bucket."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv
        self.where = f"JetStream key-value bucket {kv.bucket}"

    async def load(self) -> dict[str, DesiredState]:
        data = await self._kv.get(KEY)
        return {} if data is None else _decode(data, self.where)

    async def save(self, choices: Mapping[str, DesiredState]) -> None:
        await self._kv.put(KEY, _encode(choices))


class FileStore:
    """The choices in a JSON file, replaced atomically on every change."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = str(path)

    async def load(self) -> dict[str, DesiredState]:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.error("cannot read %s (%s); starting from the config", self.path, exc.strerror)
            return {}
        return _decode(data, self.where)

    async def save(self, choices: Mapping[str, DesiredState]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, _encode(choices), private=True)


async def open_store(bus: EventBus, state_dir: Path, *, timeout: float = 2.0) -> DesiredStore:
    """The KV store when the server has JetStream, else the file under ``state_dir``."""
    try:
        kv = await KeyValue.open(
            bus,
            BUCKET,
            timeout=timeout,
            description="Rosey plugin manager: desired state",
            max_bytes=MAX_BYTES,
        )
    except BusError as exc:
        store = FileStore(state_dir / FILE_NAME)
        log.info("desired state kept in %s (no JetStream key-value store: %s)", store.where, exc)
        return store
    return KvStore(kv)


class Choices:
    """The loaded choices plus the store they are written back to, one write at a time."""

    def __init__(self, store: DesiredStore, choices: Mapping[str, DesiredState]) -> None:
        self.store = store
        self.choices = dict(choices)
        self._lock = asyncio.Lock()

    def get(self, plugin: str) -> DesiredState | None:
        return self.choices.get(plugin)

    async def set(self, plugin: str, state: DesiredState | None) -> None:
        """Record (or with None forget) a plugin's choice; failures are logged, not raised.

        The action that made the choice has already happened; a store that cannot be written
        only means the choice will not survive a restart, which the log says.
        """
        async with self._lock:
            if state is None:
                if self.choices.pop(plugin, None) is None:
                    return
            else:
                self.choices[plugin] = state
            try:
                await self.store.save(self.choices)
            except (BusError, OSError) as exc:
                log.error(
                    "%s: cannot persist the desired state in %s (%s); "
                    "the choice holds until the bot restarts",
                    plugin,
                    self.store.where,
                    exc,
                )
