"""What every supervisor shares: settings, the bus, the spawner, folders, and the sinks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from rosey.aio import TaskSet
from rosey.bus.client import EventBus
from rosey.config import BotConfig
from rosey.lifecycle.states import State
from rosey.manager.gate import StartGate
from rosey.protocol import subjects
from rosey.sandbox.process import Spawner

log = logging.getLogger("rosey.manager")
T = TypeVar("T")


@dataclass(frozen=True)
class Identity:
    """How one plugin connects to the bus (None user: no authentication)."""

    user: str | None
    password: str | None
    inbox_prefix: str


def open_identity(name: str) -> Identity:
    """The identity of a plugin on a server that does not authenticate (external, or skeleton)."""
    return Identity(None, None, subjects.plugin_inbox_prefix(name))


class ManagerContext:
    """Shared by the manager and its supervisors; owns every background task it spawns."""

    def __init__(
        self,
        config: BotConfig,
        *,
        nats_url: str,
        bus: EventBus,
        spawner: Spawner,
        identity: Callable[[str], Identity] = open_identity,
        on_transition: Callable[[str, State, State, str], None] | None = None,
        on_disabled: Callable[[str, str, bool], None] | None = None,
    ) -> None:
        self.config = config
        self.nats_url = nats_url
        #: The broker's TCP port: the only one a plugin without ``network`` may connect to.
        self.broker_port = urlsplit(nats_url).port or 4222
        self.bus = bus
        self.spawner = spawner
        self.identity = identity
        self._on_transition = on_transition
        self._on_disabled = on_disabled
        #: Limits how many plugins are in their spawn→ready phase at once.
        self.start_gate = StartGate()
        self._tasks = TaskSet(log, "task %s failed")

    def data_dir(self, name: str) -> Path:
        return (self.config.state_dir / "data" / name).resolve()

    def log_path(self, name: str) -> Path:
        return (self.config.state_dir / "logs" / f"{name}.log").resolve()

    def on_transition(self, plugin: str, state: State, previous: State, reason: str) -> None:
        if self._on_transition is not None:
            self._on_transition(plugin, state, previous, reason)

    def on_disabled(self, plugin: str, reason: str, critical: bool) -> None:
        """``plugin`` ended disabled by itself (a crash loop); ``critical`` as it runs with."""
        if self._on_disabled is not None:
            self._on_disabled(plugin, reason, critical)

    def spawn_task(
        self, coro: Coroutine[Any, Any, T], *, name: str | None = None
    ) -> asyncio.Task[T]:
        """A background task owned here: failures are logged, shutdown cancels and awaits it."""
        return self._tasks.spawn(coro, name=name)

    async def cancel_tasks(self, timeout: float = 5.0) -> None:
        await self._tasks.cancel_all(timeout)
